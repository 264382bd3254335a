import type { ApiError } from '../errors.ts'
import type { TokenUse } from '../limits/ledger.ts'
import { ErrorEventBeforeData, type Attempt } from '../relay/attempts.ts'
import type { OpenedAttempts } from '../relay/open-attempts.ts'
import { ChunkReader, type ChunkChoice } from '../relay/chunk.ts'
import { pumpEvents } from '../relay/events.ts'
import { upstreamTruncated } from '../relay/upstream-call.ts'
import type { Outcome } from '../telemetry/record.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { textData, usageData, type StreamEventName } from './events.ts'

// A session's generation, opened by the same openAttempts as /v1/chat/completions (ranking,
// failover across backends while nothing was sent, deadlines, live stats), with the backend's
// chunks turned into the session's named events instead of being relayed as they are.

export interface GenerationSink {
  /** One event, in the turn its chunk was parsed. */
  emit(name: StreamEventName, data: string): void
  /** After each upstream read: hand what was emitted to the listeners, in one write each. */
  flush(): void
}

export interface GenerationEnd {
  outcome: Exclude<Outcome, 'refused'>
  /** What ended it when it did not finish; null when it did. */
  error: ApiError | null
  finishReason: string | null
  used: TokenUse | null
}

/**
 * Reads the accepted generation to its end: reasoning and content deltas of the first choice
 * become `reasoning` and `content` events, the usage chunk a `usage` event. Until an event has
 * been emitted a failing backend may still be replaced by the next candidate.
 */
export async function pumpGeneration(generation: OpenedAttempts, sink: GenerationSink, observer: RelayObserver): Promise<GenerationEnd> {
  let source = generation.first
  let reader = new ChunkReader({ reasoningInContent: source.reasoningInContent })
  /** Whether any event went out: from then on there is no failover. */
  let emitted = false
  let finishReason: string | null = null
  let backendError: ApiError | null = null

  const onData = (data: string): boolean => {
    const chunk = reader.read(data)
    source.call.chunkArrived(chunk)
    if (chunk.kind === 'done') return false
    if (chunk.kind === 'error') {
      if (!emitted) throw new ErrorEventBeforeData(chunk.error, data)
      backendError = chunk.error
      return false
    }
    if (chunk.kind === 'usage') {
      sink.emit('usage', usageData(chunk.usage))
      emitted = true
      return true
    }
    const first = chunk.chunk.choices.find((choice) => choice.index === 0)
    if (!first) return true
    if (emitDeltas(first, sink)) {
      // Idempotent: only the first call counts.
      observer.firstTokenArrived()
      emitted = true
    }
    finishReason = first.finish_reason ?? finishReason
    return true
  }
  const afterRead = () => {
    sink.flush()
    return undefined
  }

  for (;;) {
    try {
      const end = await pumpEvents(source.upstream, onData, { signal: source.call.signal, afterRead })
      if (end === 'eof') throw upstreamTruncated()
      break
    } catch (error) {
      sink.flush()
      const cause = error instanceof ErrorEventBeforeData ? error.error : error
      const next = emitted ? null : await generation.attempts.next(source, cause)
      if (!next) return failed(source, cause)
      source = next
      reader = new ChunkReader({ reasoningInContent: next.reasoningInContent })
    }
  }
  sink.flush()
  source.call.end()
  const used = source.call.used
  if (backendError) return { outcome: 'upstream_error', error: backendError, finishReason, used }
  return { outcome: 'ok', error: null, finishReason, used }
}

/** The choice's reasoning and answer text as events; true when it carried any (a token). */
function emitDeltas(choice: ChunkChoice, sink: GenerationSink): boolean {
  const { reasoning_content: reasoning, content } = choice.delta ?? {}
  if (reasoning) sink.emit('reasoning', textData(reasoning))
  if (content) sink.emit('content', textData(content))
  return !!(reasoning || content)
}

function failed(source: Attempt, cause: unknown): GenerationEnd {
  const { call } = source
  const error = call.failure(cause)
  const nobodyListening = call.stopReason === 'client_gone'
  call.stop('relay_failed')
  return { outcome: nobodyListening ? 'client_abort' : 'upstream_error', error, finishReason: null, used: call.used }
}
