import type { Attempt } from '../dispatch/attempts.ts'
import type { ChunkChoice } from '../relay/chunk.ts'
import { runGeneration, type DataChunk, type GenerationEnd, type GenerationSink } from '../relay/generation.ts'
import type { OpenedAttempts } from '../dispatch/open-attempts.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { textData, usageData, type StreamEventName } from './events.ts'

export type { GenerationEnd } from '../relay/generation.ts'

// A session's generation: the same engine as /v1/chat/completions (failover while nothing was
// sent, deadlines, live stats), with the backend's chunks turned into the session's named events
// instead of being relayed as they are.

export interface SessionEvents {
  /** One event, in the turn its chunk was parsed. */
  emit(name: StreamEventName, data: string): void
  /** After each upstream read: hand what was emitted to the listeners, in one write each. */
  flush(): void
}

/**
 * The first choice's reasoning and content deltas as `reasoning` and `content` events, the usage
 * chunk as a `usage` event. A backend error event mid-stream ends the generation (the session
 * then sends its own `error` event).
 */
class NamedEventSink implements GenerationSink {
  committed = false
  #events: SessionEvents

  constructor(events: SessionEvents) {
    this.#events = events
  }

  chunk(chunk: DataChunk): void {
    if (chunk.kind === 'usage') {
      this.#emit('usage', usageData(chunk.usage))
      return
    }
    const first = chunk.chunk.choices.find((choice) => choice.index === 0)
    if (first) this.#emitDeltas(first)
  }

  backendError(): void {
    this.#events.flush()
  }

  afterRead(): undefined {
    this.#events.flush()
    return undefined
  }

  #emitDeltas(choice: ChunkChoice): void {
    const { reasoning_content: reasoning, content } = choice.delta ?? {}
    if (reasoning) this.#emit('reasoning', textData(reasoning))
    if (content) this.#emit('content', textData(content))
  }

  #emit(name: StreamEventName, data: string): void {
    this.#events.emit(name, data)
    this.committed = true
  }
}

/** Reads the accepted generation to its end as named events. */
export async function pumpGeneration(generation: OpenedAttempts, events: SessionEvents, observer: RelayObserver): Promise<GenerationEnd> {
  const { first, attempts } = generation
  const end = await runGeneration<Attempt>(first, (attempt, error) => attempts.next(attempt, error), new NamedEventSink(events), {
    afterBackendError: 'stop',
    observer,
    keepChunkUsage: true,
  })
  events.flush()
  return end
}
