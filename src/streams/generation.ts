import type { GatewayConfig } from '../config.ts'
import type { WorkerEnv } from '../env.ts'
import type { ApiError } from '../errors.ts'
import { liveStatsFor } from '../fleet/live-stats.ts'
import { loadFleet } from '../fleet/registry.ts'
import { rankBackends } from '../fleet/select.ts'
import type { TokenUse } from '../limits/ledger.ts'
import { UpstreamAttempts, type Attempt } from '../relay/attempts.ts'
import { readChunk, type ChunkChoice } from '../relay/chunk.ts'
import { pumpEvents } from '../relay/events.ts'
import { upstreamTruncated } from '../relay/upstream-call.ts'
import { fleetUnavailable } from '../routes/chat.ts'
import type { Outcome } from '../telemetry/record.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { textData, usageData, type StreamEventName } from './events.ts'

// A session's generation: the same fleet code as /v1/chat/completions (ranking, failover across
// backends while nothing was sent, deadlines, live stats), with the backend's chunks turned into
// the session's named events instead of being relayed as they are.

export interface GenerationInput {
  env: WorkerEnv
  config: GatewayConfig
  body: Record<string, unknown>
  prefixKey: string | null
  requestId: string
  /** Aborted when the session stops the generation (nobody listening, lifetime, cancel). */
  signal: AbortSignal
  observer: RelayObserver
}

export interface Generation {
  first: Attempt
  attempts: UpstreamAttempts
}

/** Ranks the fleet and opens the first backend that accepts the request (throws an ApiError if none). */
export async function openGeneration(input: GenerationInput): Promise<Generation> {
  const { env, config } = input
  const fleet = await loadFleet(env.FLEET, config.fleet.fallback, config.fleet.cacheTtlMs)
  const live = liveStatsFor(config)
  const candidates = rankBackends({
    backends: fleet.backends,
    health: fleet.health,
    stats: (id) => live.of(id),
    prefixKey: input.prefixKey,
    recall: (key) => live.recall(key),
    now: Date.now(),
    options: config.fleet.selection,
  })
  if (candidates.length === 0) throw fleetUnavailable()
  const attempts = new UpstreamAttempts(candidates, {
    clientSignal: input.signal,
    timeouts: { firstEventMs: config.firstEventTimeoutMs, idleMs: config.eventIdleTimeoutMs },
    body: input.body,
    apiKey: config.backendApiKey,
    requestId: input.requestId,
    maxAttempts: config.fleet.failoverAttempts,
    live,
    prefixKey: input.prefixKey,
    observer: input.observer,
  })
  return { first: await attempts.first(), attempts }
}

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
export async function pumpGeneration(generation: Generation, sink: GenerationSink, observer: RelayObserver): Promise<GenerationEnd> {
  let source = generation.first
  /** Whether any event went out: from then on there is no failover. */
  let emitted = false
  let finishReason: string | null = null
  let backendError: ApiError | null = null

  const onData = (data: string): boolean => {
    source.call.eventArrived()
    const chunk = readChunk(data)
    if (chunk.kind === 'done') return false
    if (chunk.kind === 'error') {
      if (!emitted) throw new ErrorEventBeforeData(chunk.error)
      backendError = chunk.error
      return false
    }
    if (chunk.usage) source.call.usageReported(chunk.usage)
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

/** A backend's error event that came before any data: failover may still replace it. */
class ErrorEventBeforeData extends Error {
  readonly error: ApiError

  constructor(error: ApiError) {
    super(error.message)
    this.error = error
  }
}
