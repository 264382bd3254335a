import type { WorkerEnv } from './bindings.ts'
import { misconfigured } from './errors.ts'
import { parseBackends, type Backend } from './fleet/backends.ts'
import { DEFAULT_CIRCUIT, type CircuitOptions } from './fleet/circuit.ts'
import { REASONING_PARSERS, type BackendRecord, type ReasoningParser } from './fleet/records.ts'
import { recordsFromConfig } from './fleet/registry.ts'
import type { RoutingPolicy, SelectionOptions } from './fleet/select.ts'
import { parsePromptRules, type RuleSwitches } from './normalize/rules.ts'

/** The deployment's settings, parsed and checked once per isolate rather than per request. */
export interface GatewayConfig {
  modelId: string
  /** Names clients may use for the model, MODEL_ID included. */
  modelNames: ReadonlySet<string>
  maxModelLen: number
  maxBodyBytes: number
  /** Longest wait for the next bytes of a request body (BODY_IDLE_TIMEOUT_MS). */
  bodyIdleTimeoutMs: number
  /** Bound on reading a whole request body (BODY_TIMEOUT_MS). */
  bodyTimeoutMs: number
  backends: readonly Backend[]
  backendApiKey: string | undefined
  keepAliveMs: number
  firstEventTimeoutMs: number
  eventIdleTimeoutMs: number
  /** A backend's response headers must arrive within this (UPSTREAM_HEADERS_TIMEOUT_MS). */
  upstreamHeadersTimeoutMs: number
  allowedOrigins: ReadonlySet<string>
  /** PUBLIC_ORIGINS: the origins this Worker is served from (its own pages), never taken from Host. */
  publicOrigins: ReadonlySet<string>
  keyCacheTtlMs: number
  /** HMAC secrets for stream tokens; the first signs. Empty: stream tokens are off. */
  streamTokenSecrets: readonly string[]
  /** PROMPT_RULES, parsed: a key's record may switch rules on top (rulesForKey). */
  promptRules: Readonly<RuleSwitches>
  templateAddsThink: boolean
  rateLimits: RateLimitConfig
  fleet: FleetConfig
  telemetry: TelemetryConfig
  streams: StreamsConfig
  /** RESPONSE_RETENTION_DAYS in ms: how long a stored response is kept; 0: responses are not stored. */
  responseRetentionMs: number
}

/** Browser stream sessions (docs/streams.md). */
export interface StreamsConfig {
  /** With no EventSource connected for this long, the session's generation is stopped. */
  graceMs: number
  /** How long a finished session stays replayable before its storage is deleted. */
  retentionS: number
  /** Lifetime of a session's signed event URL. */
  urlTtlS: number
  /** Hard cap on one session's generation. */
  maxLifetimeS: number
  /** The `retry:` hint: how soon a browser reconnects after a dropped connection. */
  retryMs: number
}

export interface TelemetryConfig {
  /** How long an isolate gathers finished requests before sending them to the aggregator. */
  batchMs: number
  /** How often the aggregator writes changed buckets to KV (never a key twice within 1 s). */
  flushMs: number
  /** Retention in KV: minute buckets (the 5m and 1h windows) and hour buckets (24h). */
  minuteTtlS: number
  hourTtlS: number
}

export interface FleetConfig {
  /** Backends from BACKEND_URLS, used while the FLEET namespace holds no fleet record. */
  fallback: readonly BackendRecord[]
  cacheTtlMs: number
  /** How long past cacheTtlMs the fleet and TTFT views are served while re-read (src/cache/stale-cache.ts). */
  staleMaxMs: number
  failoverAttempts: number
  selection: SelectionOptions
  circuit: CircuitOptions
  /** HEDGING=on: a request its backend queued is hedged (docs/fleet.md, Hedging); a key's record can turn it off for that key. */
  hedging: boolean
  /** SLOT_LEDGERS=on: every upstream request holds a lease on the fleet's slot ledger (src/fleet/slots.ts). */
  slotLedgers: boolean
}

export interface RateLimitConfig {
  /** RATE_LIMITS=off: no admission at all (a deployment behind another limiter, or a benchmark). */
  enabled: boolean
  /** Limits for keys whose record leaves them unset (null). */
  defaults: { requestsPerMinute: number; tokensPerMinute: number; concurrentStreams: number }
  /** Concurrent streams of one client IP per key, for browser (stream-token) callers. */
  concurrentStreamsPerIp: number
  /** What happens when the limiter cannot answer: admit anyway ("open") or refuse ("closed"). */
  failureMode: 'open' | 'closed'
  /** How long to wait for the limiter before treating it as unreachable. */
  timeoutMs: number
  /** SPECULATIVE_ADMISSION=on: the backend call may start while the limiter decides (src/limits/headroom.ts). */
  speculative: boolean
}

const parsed = new WeakMap<WorkerEnv, GatewayConfig>()

export function readConfig(env: WorkerEnv): GatewayConfig {
  let config = parsed.get(env)
  if (!config) {
    config = {
      modelId: env.MODEL_ID,
      modelNames: new Set([env.MODEL_ID, ...list(env.MODEL_ALIASES)]),
      maxModelLen: positiveInteger('MAX_MODEL_LEN', env.MAX_MODEL_LEN),
      maxBodyBytes: positiveInteger('MAX_BODY_BYTES', env.MAX_BODY_BYTES),
      bodyIdleTimeoutMs: positiveInteger('BODY_IDLE_TIMEOUT_MS', env.BODY_IDLE_TIMEOUT_MS),
      bodyTimeoutMs: positiveInteger('BODY_TIMEOUT_MS', env.BODY_TIMEOUT_MS),
      backends: parseBackends(env.BACKEND_URLS),
      backendApiKey: env.BACKEND_API_KEY || undefined,
      keepAliveMs: positiveInteger('KEEPALIVE_INTERVAL_MS', env.KEEPALIVE_INTERVAL_MS),
      firstEventTimeoutMs: positiveInteger('FIRST_EVENT_TIMEOUT_MS', env.FIRST_EVENT_TIMEOUT_MS),
      eventIdleTimeoutMs: positiveInteger('EVENT_IDLE_TIMEOUT_MS', env.EVENT_IDLE_TIMEOUT_MS),
      upstreamHeadersTimeoutMs: positiveInteger('UPSTREAM_HEADERS_TIMEOUT_MS', env.UPSTREAM_HEADERS_TIMEOUT_MS),
      allowedOrigins: new Set(list(env.ALLOWED_ORIGINS)),
      publicOrigins: readPublicOrigins(env.PUBLIC_ORIGINS),
      keyCacheTtlMs: positiveInteger('KEY_CACHE_TTL_MS', env.KEY_CACHE_TTL_MS),
      responseRetentionMs: nonNegativeInteger('RESPONSE_RETENTION_DAYS', env.RESPONSE_RETENTION_DAYS) * 86_400_000,
      streamTokenSecrets: list(env.STREAM_TOKEN_SECRETS ?? ''),
      promptRules: parsePromptRules(env.PROMPT_RULES),
      templateAddsThink: env.TEMPLATE_ADDS_THINK !== 'false',
      rateLimits: readRateLimits(env),
      telemetry: readTelemetryConfig(env),
      fleet: readFleetConfig(env),
      streams: readStreamsConfig(env),
    }
    parsed.set(env, config)
  }
  return config
}

/** BACKEND_REASONING_PARSER: the --reasoning-parser of the BACKEND_URLS backends. */
function reasoningParserOf(value: string | undefined): ReasoningParser {
  const parser = (value ?? 'deepseek_r1') as ReasoningParser
  if (!REASONING_PARSERS.includes(parser)) throw misconfigured(`BACKEND_REASONING_PARSER must be one of ${REASONING_PARSERS.join(', ')}.`)
  return parser
}

const POLICIES: readonly RoutingPolicy[] = ['smart', 'weighted_random', 'round_robin']

function readFleetConfig(env: WorkerEnv): FleetConfig {
  const policy = env.ROUTING_POLICY as RoutingPolicy
  if (!POLICIES.includes(policy)) throw misconfigured(`ROUTING_POLICY must be one of ${POLICIES.join(', ')}.`)
  const failureRate = Number(env.CIRCUIT_FAILURE_RATE)
  if (!(failureRate > 0 && failureRate <= 1)) throw misconfigured('CIRCUIT_FAILURE_RATE must be a number in (0, 1].')
  return {
    fallback: recordsFromConfig(
      parseBackends(env.BACKEND_URLS),
      positiveInteger('BACKEND_MAX_CONCURRENCY', env.BACKEND_MAX_CONCURRENCY),
      reasoningParserOf(env.BACKEND_REASONING_PARSER),
    ),
    cacheTtlMs: positiveInteger('FLEET_CACHE_TTL_MS', env.FLEET_CACHE_TTL_MS),
    staleMaxMs: nonNegativeInteger('FLEET_STALE_MAX_MS', env.FLEET_STALE_MAX_MS),
    failoverAttempts: positiveInteger('FAILOVER_ATTEMPTS', env.FAILOVER_ATTEMPTS),
    selection: {
      policy,
      healthMaxAgeMs: 3 * 60_000,
      loadMaxAgeMs: 3_000,
      affinityLoadBound: 1.25,
      defaultTtftMs: 1_000,
    },
    circuit: {
      ...DEFAULT_CIRCUIT,
      consecutiveFailures: positiveInteger('CIRCUIT_CONSECUTIVE_FAILURES', env.CIRCUIT_CONSECUTIVE_FAILURES),
      failureRate,
      cooldownMs: positiveInteger('CIRCUIT_COOLDOWN_MS', env.CIRCUIT_COOLDOWN_MS),
      // A third of the headers deadline: far above vLLM's milliseconds, well before the deadline.
      stallMs: Math.ceil(positiveInteger('UPSTREAM_HEADERS_TIMEOUT_MS', env.UPSTREAM_HEADERS_TIMEOUT_MS) / 3),
    },
    hedging: onOff('HEDGING', env.HEDGING),
    slotLedgers: onOff('SLOT_LEDGERS', env.SLOT_LEDGERS),
  }
}

function readRateLimits(env: WorkerEnv): RateLimitConfig {
  const mode = env.RATE_LIMITER_FAILURE_MODE
  if (mode !== 'open' && mode !== 'closed') {
    throw misconfigured('RATE_LIMITER_FAILURE_MODE must be "open" or "closed".')
  }
  return {
    enabled: env.RATE_LIMITS !== 'off',
    defaults: {
      requestsPerMinute: positiveInteger('DEFAULT_REQUESTS_PER_MINUTE', env.DEFAULT_REQUESTS_PER_MINUTE),
      tokensPerMinute: positiveInteger('DEFAULT_TOKENS_PER_MINUTE', env.DEFAULT_TOKENS_PER_MINUTE),
      concurrentStreams: positiveInteger('DEFAULT_CONCURRENT_STREAMS', env.DEFAULT_CONCURRENT_STREAMS),
    },
    concurrentStreamsPerIp: positiveInteger('CONCURRENT_STREAMS_PER_IP', env.CONCURRENT_STREAMS_PER_IP),
    failureMode: mode,
    timeoutMs: positiveInteger('RATE_LIMITER_TIMEOUT_MS', env.RATE_LIMITER_TIMEOUT_MS),
    speculative: onOff('SPECULATIVE_ADMISSION', env.SPECULATIVE_ADMISSION),
  }
}

function onOff(name: string, value: string | undefined): boolean {
  if (value === 'on' || value === undefined) return true
  if (value === 'off') return false
  throw misconfigured(`${name} must be "on" or "off".`)
}

/** The rate limiter drops a lease after 15 minutes (LEASE_MAX_MS): a session must end well before. */
const MAX_SESSION_LIFETIME_S = 14 * 60

function readStreamsConfig(env: WorkerEnv): StreamsConfig {
  const config = {
    graceMs: positiveInteger('STREAM_GRACE_MS', env.STREAM_GRACE_MS),
    retentionS: positiveInteger('STREAM_RETENTION_S', env.STREAM_RETENTION_S),
    urlTtlS: positiveInteger('STREAM_URL_TTL_S', env.STREAM_URL_TTL_S),
    maxLifetimeS: positiveInteger('STREAM_MAX_LIFETIME_S', env.STREAM_MAX_LIFETIME_S),
    retryMs: positiveInteger('STREAM_RETRY_MS', env.STREAM_RETRY_MS),
  }
  if (config.maxLifetimeS > MAX_SESSION_LIFETIME_S)
    throw misconfigured(`STREAM_MAX_LIFETIME_S must be at most ${MAX_SESSION_LIFETIME_S} (the rate limiter's lease lasts 15 minutes).`)
  // A browser that waits longer than the grace period to reconnect finds its generation stopped.
  if (config.retryMs >= config.graceMs) throw misconfigured('STREAM_RETRY_MS must be shorter than STREAM_GRACE_MS.')
  return config
}

/** Also read on its own by the telemetry aggregator, which has no request context. */
export function readTelemetryConfig(env: WorkerEnv): TelemetryConfig {
  const config = {
    batchMs: positiveInteger('TELEMETRY_BATCH_MS', env.TELEMETRY_BATCH_MS),
    flushMs: positiveInteger('LATENCY_FLUSH_MS', env.LATENCY_FLUSH_MS),
    minuteTtlS: positiveInteger('LATENCY_MINUTE_TTL_S', env.LATENCY_MINUTE_TTL_S),
    hourTtlS: positiveInteger('LATENCY_HOUR_TTL_S', env.LATENCY_HOUR_TTL_S),
  }
  // The windows read back what they cover: 60 minute buckets for 1h, 24 hour buckets for 24h.
  if (config.minuteTtlS < 3900) throw misconfigured('LATENCY_MINUTE_TTL_S must be at least 3900 (the 1h window and its current minute).')
  if (config.hourTtlS < 90_000) throw misconfigured('LATENCY_HOUR_TTL_S must be at least 90000 (the 24h window and its current hour).')
  return config
}

/** PUBLIC_ORIGINS: each entry exactly an origin (scheme://host[:port], no path), as browsers send it. */
function readPublicOrigins(value: string | undefined): ReadonlySet<string> {
  const origins = list(value ?? '')
  for (const origin of origins) {
    const parsed = URL.canParse(origin) ? new URL(origin) : null
    if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin) {
      throw misconfigured('PUBLIC_ORIGINS must list origins such as https://gateway.example.com (scheme, host, optional port; no path).')
    }
  }
  return new Set(origins)
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
}

function nonNegativeInteger(name: string, value: string): number {
  const number = Number(value)
  if (value.trim() === '' || !Number.isInteger(number) || number < 0) {
    throw misconfigured(`${name} must be a non-negative integer.`)
  }
  return number
}

function positiveInteger(name: string, value: string): number {
  const number = Number(value)
  if (!Number.isInteger(number) || number <= 0) {
    throw misconfigured(`${name} must be a positive integer.`)
  }
  return number
}
