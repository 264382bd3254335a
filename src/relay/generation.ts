import type { ApiError } from '../errors.ts'
import type { TokenUse } from '../limits/ledger.ts'
import { reasonOfCode, type EndReason } from '../ending.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { ErrorEventBeforeData } from '../dispatch/attempts.ts'
import { carriesToken, type UpstreamChunk } from './chunk.ts'
import type { NextSource, RelaySource } from '../dispatch/source.ts'
import type { GenerationSink } from './sink.ts'
import type { HedgePlan } from '../dispatch/hedge.ts'
import { HedgeRace, LaneFailure } from '../dispatch/hedge-race.ts'

// The generation engine: one upstream generation read to its end, for every way a client gets
// it (the OpenAI SSE pass-through, the stream: false collector, the stream sessions' named
// events). It owns the failover loop, the per-chunk bookkeeping (first event, usage, first token,
// finish reason) and how the generation ended; HedgeRace reads the sources (one, or two raced for
// the first token). What a client sees is the sink's business. It is push-based: each chunk
// reaches the sink in the turn its bytes were parsed.

export type { NextSource, RelaySource } from '../dispatch/source.ts'
export type { DataChunk, GenerationSink } from './sink.ts'

export interface GenerationOptions<S extends RelaySource = RelaySource> {
  /** After a backend error event once committed: pass it on and read to [DONE], or stop there. */
  afterBackendError: 'read_to_done' | 'stop'
  observer: RelayObserver
  /** Keep the running usage on chunks (see ChunkReader). */
  keepChunkUsage: boolean
  /** Hedged first tokens: how to race a second source while no data event came; null or absent: never. */
  hedge?: HedgePlan<S> | null
}

export interface GenerationEnd {
  /** Why it ended (src/ending.ts): never refused, a backend was asked. */
  reason: Exclude<EndReason, 'refused'>
  /** What ended it when it did not finish; null when it did. */
  error: ApiError | null
  /** The backend's own error event that ended it, as sent (null when the gateway's error ended it). */
  backendEvent: string | null
  /** The first choice's finish reason. */
  finishReason: string | null
  used: TokenUse | null
}

/** Reads `first` to its end, failing over through `next` while the sink has not committed. */
export async function runGeneration<S extends RelaySource>(
  first: S,
  next: NextSource<S> | null,
  sink: GenerationSink,
  options: GenerationOptions<S>,
): Promise<GenerationEnd> {
  let source = first
  let firstTokenSeen = false
  let finishReason: string | null = null
  let backendFailure: { error: ApiError; data: string } | null = null

  const onChunk = (chunk: UpstreamChunk, data: string): boolean => {
    if (chunk.kind === 'done') return false
    if (chunk.kind === 'error') {
      // Before anything reached the client, a backend error may still fail over.
      if (!sink.committed) throw new ErrorEventBeforeData(chunk.error, data)
      backendFailure = { error: chunk.error, data }
      sink.backendError(chunk.error, data)
      return options.afterBackendError === 'read_to_done'
    }
    const firstToken = !firstTokenSeen && carriesToken(chunk)
    if (firstToken) {
      firstTokenSeen = true
      options.observer.firstTokenArrived()
    }
    if (chunk.kind === 'delta') finishReason = chunk.chunk.choices.find((choice) => choice.index === 0)?.finish_reason ?? finishReason
    sink.chunk(chunk, firstToken)
    return true
  }

  const race = new HedgeRace<S>({ sink, plan: options.hedge ?? null, keepChunkUsage: options.keepChunkUsage, onChunk })
  try {
    for (;;) {
      try {
        source = await race.run(source)
        break
      } catch (failure) {
        if (!(failure instanceof LaneFailure)) throw failure
        const { error } = failure
        source = (failure as LaneFailure<S>).source
        const cause = error instanceof ErrorEventBeforeData ? error.error : error
        const replacement = sink.committed || !next ? null : await next(source, cause)
        if (!replacement) return failed(source, cause, error instanceof ErrorEventBeforeData ? error.data : null)
        source = replacement
        sink.restart?.()
      }
    }
  } finally {
    race.close()
  }
  source.call.end()
  const used = source.call.used
  const failure = backendFailure as { error: ApiError; data: string } | null
  if (failure) return { reason: 'backend_failed', error: failure.error, backendEvent: failure.data, finishReason, used }
  return { reason: 'done', error: null, backendEvent: null, finishReason, used }
}

function failed(source: RelaySource, cause: unknown, backendEvent: string | null): GenerationEnd {
  const { call } = source
  const error = call.failure(cause)
  const clientGone = call.stopReason === 'client_gone'
  call.stop('relay_failed')
  return { reason: clientGone ? 'client_gone' : reasonOfCode(error.code), error, backendEvent, finishReason: null, used: call.used }
}
