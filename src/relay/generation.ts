import type { ApiError } from '../errors.ts'
import type { TokenUse } from '../limits/ledger.ts'
import type { Outcome } from '../telemetry/record.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { ErrorEventBeforeData } from './attempts.ts'
import { carriesToken, ChunkReader, type UpstreamChunk } from './chunk.ts'
import { pumpEvents } from './events.ts'
import { upstreamTruncated, type UpstreamCall } from './upstream-call.ts'

// The generation engine: one upstream generation read to its end, for every way a client gets
// it (the OpenAI SSE pass-through, the stream: false collector, the stream sessions' named
// events). It owns the failover loop, the per-chunk bookkeeping (first event, usage, first token,
// finish reason) and how the generation ended. What a client sees is the sink's business. It is
// push-based: each chunk reaches the sink in the turn its bytes were parsed.

/** An accepted upstream request: its event stream and its call. */
export interface RelaySource {
  upstream: ReadableStream<Uint8Array>
  call: UpstreamCall
  /** The backend runs without a reasoning parser (see ChunkReader). */
  reasoningInContent?: boolean
}

/** Failover: the next accepted source after `source` failed with `error`, or null to end with the failure. */
export type NextSource<S extends RelaySource> = (source: S, error: unknown) => Promise<S | null>

export type DataChunk = Extract<UpstreamChunk, { kind: 'delta' | 'usage' }>

export interface GenerationSink {
  /** Whether anything reached the client: from then on a failed backend cannot be replaced. */
  readonly committed: boolean
  /** One chunk; `firstToken` is true for the first that carries reasoning or answer text. */
  chunk(chunk: DataChunk, firstToken: boolean): void
  /** A backend error event once committed; the engine then reads on to [DONE] or stops (`afterBackendError`). */
  backendError(error: ApiError, data: string): void
  /** After each upstream read: hand out what was produced; a promise to await is backpressure. */
  afterRead(): Promise<unknown> | undefined
  /** A failover replaces the attempt: forget what the last one produced (it never reached anyone). */
  restart?(): void
}

export interface GenerationOptions {
  /** After a backend error event once committed: pass it on and read to [DONE], or stop there. */
  afterBackendError: 'read_to_done' | 'stop'
  observer: RelayObserver
  /** Keep the running usage on chunks (see ChunkReader). */
  keepChunkUsage: boolean
}

export interface GenerationEnd {
  outcome: Exclude<Outcome, 'refused'>
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
  options: GenerationOptions,
): Promise<GenerationEnd> {
  let source = first
  const readerFor = (attempt: S) =>
    new ChunkReader({ keepChunkUsage: options.keepChunkUsage, reasoningInContent: attempt.reasoningInContent })
  let reader = readerFor(first)
  let firstTokenSeen = false
  let finishReason: string | null = null
  let backendFailure: { error: ApiError; data: string } | null = null

  const onData = (data: string): boolean => {
    const chunk = reader.read(data)
    source.call.chunkArrived(chunk)
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

  for (;;) {
    try {
      const end = await pumpEvents(source.upstream, onData, { signal: source.call.signal, afterRead: () => sink.afterRead() })
      if (end === 'eof') throw upstreamTruncated()
      break
    } catch (error) {
      const cause = error instanceof ErrorEventBeforeData ? error.error : error
      const replacement = sink.committed || !next ? null : await next(source, cause)
      if (!replacement) return failed(source, cause, error instanceof ErrorEventBeforeData ? error.data : null)
      source = replacement
      reader = readerFor(replacement)
      sink.restart?.()
    }
  }
  source.call.end()
  const used = source.call.used
  const failure = backendFailure as { error: ApiError; data: string } | null
  if (failure) return { outcome: 'upstream_error', error: failure.error, backendEvent: failure.data, finishReason, used }
  return { outcome: 'ok', error: null, backendEvent: null, finishReason, used }
}

function failed(source: RelaySource, cause: unknown, backendEvent: string | null): GenerationEnd {
  const { call } = source
  const error = call.failure(cause)
  const clientGone = call.stopReason === 'client_gone'
  call.stop('relay_failed')
  return { outcome: clientGone ? 'client_abort' : 'upstream_error', error, backendEvent, finishReason: null, used: call.used }
}
