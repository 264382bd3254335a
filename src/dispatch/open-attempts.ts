import type { Background } from '../cache/stale-cache.ts'
import type { GatewayConfig } from '../config.ts'
import type { WorkerEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { credentialsFrom } from '../fleet/access.ts'
import { QUEUE_DEADLINE_MS } from '../fleet/edge-queue.ts'
import { liveStatsFor } from '../fleet/live-stats.ts'
import { loadFleet, noBackendsRegistered } from '../fleet/registry.ts'
import { rankBackends, rankForQueue, type Candidate, type SelectionInput } from '../fleet/select.ts'
import { slotLedger, type Acquired, type QueuePlace, type SlotClaim, type SlotLedger } from '../fleet/slots.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { UpstreamAttempts, type Attempt } from './attempts.ts'
import { clientClosed } from './upstream-call.ts'
import { checkEjectedBackends } from './recovery.ts'
import { healthCheckTimeoutMs } from './verdict.ts'

// How every upstream request starts, for the API route and for stream sessions alike: the fleet,
// the ranking, and the first backend that accepts.

export interface OpenAttemptsInput {
  env: WorkerEnv
  config: GatewayConfig
  /** The body sent to vLLM (see upstreamBody in src/chat/prepare.ts). */
  body: Record<string, unknown>
  prefixKey: string | null
  /** The gateway's correlation id (the client's X-Request-Id or its own): logs only, never sent upstream. */
  requestId: string
  /** The body's max_tokens is the key's cap, which the gateway wrote (see applyContextBudget). */
  gatewayMaxTokens?: boolean
  /** Aborts the upstream request: the client left, or the session stopped it. */
  signal: AbortSignal
  observer: RelayObserver
  /** The request's waitUntil: a fleet record past its TTL is re-read after the response. */
  background?: Background
  /** The caller's key allows hedging a queued request (the deployment's HEDGING decides too); absent: no hedging. */
  hedging?: boolean
  /** Who the request is for the edge queue (key, priority class, weight), and how full a backend may be for it. */
  place: QueuePlace
}

export interface OpenedAttempts {
  first: Attempt
  /** For failover from `first` while nothing has reached the client. */
  attempts: UpstreamAttempts
}

/** Ranks the fleet and opens the first backend that accepts the request; throws an ApiError if none does. */
export async function openAttempts(input: OpenAttemptsInput): Promise<OpenedAttempts> {
  const { env, config, prefixKey } = input
  const fleet = await loadFleet(env.FLEET, config.fleet.fallback, config.fleet.cacheTtlMs, {
    background: input.background,
    staleMaxMs: config.fleet.staleMaxMs,
  })
  if (fleet.backends.length === 0) throw noBackendsRegistered()
  const live = liveStatsFor(config, config.fleet.circuit)
  const credentials = credentialsFrom(env, config.backendApiKey)
  const timeoutMs = healthCheckTimeoutMs(config.upstreamHeadersTimeoutMs)
  checkEjectedBackends({ backends: fleet.backends, live, credentials, timeoutMs, background: input.background })
  const selection: SelectionInput = {
    backends: fleet.backends,
    health: fleet.health,
    stats: (id) => live.of(id),
    prefixKey,
    recall: (key) => live.recall(key),
    now: Date.now(),
    options: config.fleet.selection,
    priority: input.place.priority,
  }
  const slots = slotLedger(env, config.fleet.slotLedgers, live, input.background)
  let candidates = rankBackends(selection)
  let granted: { backendId: string; claim: SlotClaim } | null = null
  // Batch work is admitted by the ledger itself whenever there is one, room or not: only its exact
  // counts keep the slots reserved for interactive requests free from every isolate's batch
  // requests at once (measured: sent on each isolate's view, 8 isolates' batch flood queued 5-6
  // requests in vLLM ahead of the slots kept free, bench:saturation), and a batch request can
  // afford the round trip. Other classes ask only when this isolate sees no room.
  if (candidates.length === 0 || (slots !== null && input.place.priority === 'batch')) {
    const waited = await waitAtEdge(slots, input, rankForQueue(selection))
    candidates = waited.candidates
    granted = waited.granted
  }
  const attempts = new UpstreamAttempts(candidates, {
    clientSignal: input.signal,
    timeouts: { headersMs: config.upstreamHeadersTimeoutMs, firstEventMs: config.firstEventTimeoutMs, idleMs: config.eventIdleTimeoutMs },
    body: input.body,
    credentials,
    gatewayMaxTokens: input.gatewayMaxTokens ?? false,
    maxAttempts: config.fleet.failoverAttempts,
    live,
    prefixKey,
    observer: input.observer,
    hedging: (input.hedging ?? false) && config.fleet.hedging,
    slots,
    granted,
    priority: input.place.priority,
  })
  return { first: await attempts.first(), attempts }
}

/**
 * Every backend is full for this request in this isolate's view: it waits in the fleet's edge queue
 * (the slot ledger) for a slot, and goes to the granted backend first, then, should that one fail,
 * to the others in ranked order. Throws the refusal when it gets none; the wait is on the trace,
 * apart from the time to first token at the backend.
 */
async function waitAtEdge(
  slots: SlotLedger | null,
  input: OpenAttemptsInput,
  offered: Candidate[],
): Promise<{ candidates: Candidate[]; granted: { backendId: string; claim: SlotClaim } }> {
  if (slots === null || offered.length === 0) throw fleetUnavailable(1)
  const offers = offered.map(({ backend }) => ({ id: backend.id, maxConcurrency: backend.maxConcurrency }))
  input.observer.enteredEdgeQueue?.(QUEUE_DEADLINE_MS[input.place.priority])
  const acquired = await slots.acquire(input.place, offers, input.signal)
  input.observer.waitedAtEdge?.(acquired.waitedMs)
  if (acquired.kind !== 'granted') throw queueRefusal(acquired)
  const first = offered.find(({ backend }) => backend.id === acquired.backendId)
  if (!first) {
    acquired.claim.release()
    throw fleetUnavailable(1)
  }
  return {
    candidates: [first, ...offered.filter((candidate) => candidate !== first)],
    granted: { backendId: acquired.backendId, claim: acquired.claim },
  }
}

/** The error a request gets when the edge queue gave it no slot. */
export function queueRefusal(acquired: Exclude<Acquired, { kind: 'granted' }>): ApiError {
  if (acquired.kind === 'left') return clientClosed()
  if (acquired.kind === 'unavailable') return fleetUnavailable(1)
  const retryAfter = { 'retry-after': String(acquired.retryAfterS) }
  const waited = `${(acquired.waitedMs / 1000).toFixed(1)} s`
  switch (acquired.reason) {
    case 'queue_full':
      return new ApiError(
        503,
        `Every backend is busy and the requests waiting ahead of this one would not be served within its priority class's deadline; retry after ${acquired.retryAfterS} s.`,
        { code: 'queue_full', headers: retryAfter },
      )
    case 'queue_timeout':
      return new ApiError(
        503,
        `Every backend stayed busy: this request waited ${waited} at the gateway, its priority class's deadline, without a free slot; retry after ${acquired.retryAfterS} s.`,
        { code: 'queue_timeout', headers: retryAfter },
      )
    case 'queue_displaced':
      return new ApiError(
        503,
        `Every backend is busy and the gateway's queue is at its bound: this request gave its place to one of a higher priority class after ${waited}; retry after ${acquired.retryAfterS} s.`,
        { code: 'queue_displaced', headers: retryAfter },
      )
  }
}

/** A full fleet with no edge queue to wait in (the slot ledger off, or not answering). */
function fleetUnavailable(retryAfterS: number): ApiError {
  return new ApiError(503, 'Every backend is busy; please retry shortly.', {
    code: 'backends_unavailable',
    headers: { 'retry-after': String(retryAfterS) },
  })
}
