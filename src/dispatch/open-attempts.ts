import type { Background } from '../cache/stale-cache.ts'
import type { GatewayConfig } from '../config.ts'
import type { WorkerEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { credentialsFrom } from '../fleet/access.ts'
import { liveStatsFor } from '../fleet/live-stats.ts'
import { loadFleet, noBackendsRegistered } from '../fleet/registry.ts'
import { rankBackends } from '../fleet/select.ts'
import { slotLedger } from '../fleet/slots.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { UpstreamAttempts, type Attempt } from './attempts.ts'
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
  const candidates = rankBackends({
    backends: fleet.backends,
    health: fleet.health,
    stats: (id) => live.of(id),
    prefixKey,
    recall: (key) => live.recall(key),
    now: Date.now(),
    options: config.fleet.selection,
  })
  if (candidates.length === 0) throw fleetUnavailable()
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
    slots: slotLedger(env, config.fleet.slotLedgers, live, input.background),
  })
  return { first: await attempts.first(), attempts }
}

/** Only a full fleet answers this: passive signals never leave the ranking empty (src/fleet/select.ts). */
function fleetUnavailable(): ApiError {
  return new ApiError(503, 'Every backend is busy; please retry shortly.', {
    code: 'backends_unavailable',
    headers: { 'retry-after': '1' },
  })
}
