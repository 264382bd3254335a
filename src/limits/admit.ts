import type { Context } from 'hono'
import type { KeyRecord } from '../auth/key-record.ts'
import type { RateLimitConfig } from '../config.ts'
import type { EndReason } from '../ending.ts'
import type { AppEnv, WorkerEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { proxyCounters } from '../telemetry/counters.ts'
import { withTimeout } from '../timeout.ts'
import type { Decision, EffectiveLimits, LimitName, LimitView, TokenUse } from './ledger.ts'
import { budgetValue } from './budget.ts'
import { formatResetTime, rateLimitHeaders, retryAfterHeaders } from './headers.ts'
import { claimHeadroom, forgetHeadroom, rememberDecision } from './headroom.ts'
import type { LimiterDecision } from '../durable/key-limiter.ts'

/** An admitted request's hold on its key's limits, released exactly once by `settle`. */
export interface Admission {
  /**
   * Frees the stream slot and charges what was really used (null: nothing the backend reported).
   * `reason`, why the request ended, tells the limiter of slow requests (src/limits/pause.ts).
   */
  settle(used: TokenUse | null, reason?: EndReason): void
}

const NOTHING_USED: TokenUse = { promptTokens: 0, completionTokens: 0 }
const UNLIMITED: Admission = { settle() {} }
/** How long past its deadline a limiter's answer is still awaited, to hand back a late lease. */
const LATE_ANSWER_FACTOR = 5

/**
 * A held lease on a key's limits, for an owner other than the request that admitted it (a stream
 * session's Durable Object settles it when the generation ends: `settleLease`).
 */
export interface LeaseRef {
  keyId: string
  leaseId: string
}

/** An admission under way: whether the backend may be called before it is decided, and the decision. */
export interface PendingAdmission {
  /**
   * True when the isolate's last answer for the key left clear headroom (src/limits/headroom.ts):
   * the caller may start the backend call now, but must write nothing to the client before
   * `decided` resolves, and must abort the backend call if it rejects.
   */
  speculative: boolean
  /** Resolves admitted, or rejects with the refusal (429, 401 for a revoked key, 503 fail-closed). */
  decided: Promise<Admission>
}

/**
 * Starts the admission of a request of an API key: speculative while the key has clear headroom,
 * otherwise the caller waits for `decided` before calling the backend, as without speculation.
 */
export function beginAdmission(c: Context<AppEnv>, reserveTokens: number): PendingAdmission {
  const principal = c.get('principal')
  const { enabled, speculative } = c.get('config').rateLimits
  const claim = enabled && speculative && principal.via === 'api_key' ? claimHeadroom(principal.keyId, reserveTokens) : null
  const decided = admitRequest(c, reserveTokens)
  if (claim) {
    proxyCounters.speculativeAdmissions++
    decided.then(claim.release, () => {
      proxyCounters.speculativeRefusals++
      claim.release()
    })
  }
  return { speculative: claim !== null, decided }
}

/**
 * Asks the key's limiter (a Durable Object) to admit a request that may use `reserveTokens`
 * tokens. Admitted: the x-ratelimit-* headers go on the response and the returned admission must
 * be settled when the request ends. Refused: a 429 naming the limit, with Retry-After. A limiter
 * that cannot answer in time fails open or closed, as configured, and is logged and counted.
 */
export async function admitRequest(c: Context<AppEnv>, reserveTokens: number): Promise<Admission> {
  const lease = await admitLease(c, reserveTokens)
  if (!lease) return UNLIMITED
  return heldAdmission(c.executionCtx, c.env, lease, c.get('requestId'))
}

/**
 * The admission of `lease`, apart from admitRequest so that its closures (which live as long as
 * the stream) hold only what the settlement needs, not the Hono context `c`, whose request and
 * cached body would otherwise stay alive until the stream ends (bench/results/memory-retention.md).
 */
function heldAdmission(
  ctx: Pick<Context<AppEnv>['executionCtx'], 'waitUntil'>,
  env: WorkerEnv,
  lease: LeaseRef,
  requestId: string,
): Admission {
  // The settlement runs after the response (and after a client that left), so the request's
  // context is kept alive until it is done.
  let settled = false
  let done!: () => void
  ctx.waitUntil(new Promise<void>((resolve) => (done = resolve)))
  return {
    settle(used, reason) {
      if (settled) return
      settled = true
      // This isolate's last answer came before this strike: its headroom may be out of date.
      if (reason === 'request_too_slow') forgetHeadroom(lease.keyId)
      settleLease(env, lease, used, reason)
        .catch((error: unknown) => {
          proxyCounters.rateLimiterSettleFailures++
          logEvent('rate_limiter_settle_failed', { requestId, keyId: lease.keyId }, error)
        })
        .finally(done)
    },
  }
}

/**
 * The admission itself, as `admitRequest` describes, handing back the lease instead of an
 * admission bound to this request: null when nothing is held (limits off, or the limiter failed
 * open). Whoever takes the lease must settle it exactly once, with `settleLease`.
 */
export async function admitLease(c: Context<AppEnv>, reserveTokens: number): Promise<LeaseRef | null> {
  const { rateLimits } = c.get('config')
  if (!rateLimits.enabled) return null
  const principal = c.get('principal')
  const limits = effectiveLimits(principal.record, rateLimits)
  const leaseId = crypto.randomUUID()
  const limiter = c.env.LIMITER.get(c.env.LIMITER.idFromName(principal.keyId))
  const clientIp = principal.via === 'stream_token' ? (c.req.header('cf-connecting-ip') ?? 'unknown') : null

  const asked = limiter.admit({ leaseId, reserveTokens, limits, clientIp, keyId: principal.keyId }) as Promise<LimiterDecision>
  let decision: LimiterDecision
  try {
    decision = await limiterAnswer(asked, rateLimits.timeoutMs)
  } catch (error) {
    // A late "admitted" would hold a slot nobody settles: give it back if it comes within a while
    // (later than that, the limiter frees it after LEASE_MAX_MS).
    c.executionCtx.waitUntil(
      limiterAnswer(asked, rateLimits.timeoutMs * LATE_ANSWER_FACTOR)
        .then((late) => (late.admitted ? limiter.settle(leaseId, NOTHING_USED) : false))
        .catch(() => false),
    )
    forgetHeadroom(principal.keyId)
    limiterUnavailable(c, rateLimits, error)
    return null
  }
  rememberDecision(principal.keyId, decision.admitted, decision.view)
  // Revoked with the key CLI: refused at once, whatever the isolate's cached key record says.
  if ('revoked' in decision) throw new ApiError(401, 'This API key has been revoked.', { code: 'invalid_api_key' })
  const headers = rateLimitHeaders(decision.view)
  if (!decision.admitted) {
    proxyCounters.rateLimitRefusals++
    throw refusal(decision, principal.keyId, headers)
  }
  for (const [name, value] of Object.entries(headers)) c.header(name, value)
  return { keyId: principal.keyId, leaseId }
}

/**
 * Frees a lease's stream slot and charges what was used (null: nothing the backend reported);
 * `reason` is why the request ended, when known.
 */
export function settleLease(env: WorkerEnv, lease: LeaseRef, used: TokenUse | null, reason?: EndReason): Promise<boolean> {
  const limiter = env.LIMITER.get(env.LIMITER.idFromName(lease.keyId))
  return limiter.settle(lease.leaseId, used ?? NOTHING_USED, reason ?? null)
}

/**
 * The limits the key's limiter applies: the record's, or the deployment's defaults. Budgets have no
 * deployment default: a record without one (absent, null, or not a whole number >= 0) has none.
 */
export function effectiveLimits(record: KeyRecord, config: RateLimitConfig): EffectiveLimits {
  const { limits } = record
  return {
    requestsPerMinute: limits.requestsPerMinute ?? config.defaults.requestsPerMinute,
    tokensPerMinute: limits.tokensPerMinute ?? config.defaults.tokensPerMinute,
    concurrentStreams: limits.concurrentStreams ?? config.defaults.concurrentStreams,
    concurrentStreamsPerIp: config.concurrentStreamsPerIp,
    budgetDay: budgetValue(limits.budgetDay),
    budgetMonth: budgetValue(limits.budgetMonth),
  }
}

const LIMIT_NAMES: Record<LimitName, string> = {
  requests: 'requests per minute (RPM)',
  tokens: 'tokens per minute (TPM)',
  concurrent_streams: 'concurrent streams',
  concurrent_streams_per_ip: 'concurrent streams per client IP',
  slow_requests: 'slow requests',
  budget_day: 'token budget of the day (UTC)',
  budget_month: 'token budget of the month (UTC)',
}

function refusal(decision: Extract<Decision, { admitted: false }>, keyId: string, headers: Record<string, string>): ApiError {
  const { limit, limitValue, used, requested, retryAfterMs } = decision
  if (limit === 'slow_requests') return paused(retryAfterMs, headers)
  if (limit === 'budget_day' || limit === 'budget_month') return budgetSpent(decision, keyId, headers)
  const numbers = `Limit ${limitValue}, Used ${used}, Requested ${requested}.`
  // The OpenAI error `type` of a 429 names the limit ("requests", "tokens").
  const options = { type: limit, code: 'rate_limit_exceeded' } as const
  if (!Number.isFinite(retryAfterMs)) {
    // Larger than the limit itself: waiting cannot help, so tell SDKs not to retry.
    return new ApiError(
      429,
      `Request too large for ${keyId} on ${LIMIT_NAMES[limit]}: ${numbers} Lower max_tokens or shorten the messages.`,
      { ...options, headers: { ...headers, 'x-should-retry': 'false' } },
    )
  }
  const wait = Math.max(1, Math.ceil(retryAfterMs / 1000))
  return new ApiError(429, `Rate limit reached for ${keyId} on ${LIMIT_NAMES[limit]}: ${numbers} Please try again in ${wait}s.`, {
    ...options,
    headers: { ...headers, ...retryAfterHeaders(retryAfterMs) },
  })
}

/** The 429 of a key paused for slow requests (src/limits/pause.ts): it says why, and for how long. */
function paused(retryAfterMs: number, headers: Record<string, string>): ApiError {
  const wait = Math.max(1, Math.ceil(retryAfterMs / 1000))
  return new ApiError(
    429,
    `This key's requests kept missing the backends' deadlines for their own reasons (request_too_slow); its requests are paused for ${wait} s.`,
    { type: 'slow_requests', code: 'key_paused', headers: { ...headers, ...retryAfterHeaders(retryAfterMs) } },
  )
}

/**
 * The 429 of a spent budget (src/limits/budget.ts): which period, the numbers, and when it resets,
 * as a time in the message and the x-budget-reset-* header, and as Retry-After.
 */
function budgetSpent(decision: Extract<Decision, { admitted: false }>, keyId: string, headers: Record<string, string>): ApiError {
  const { limit, limitValue, used, requested, retryAfterMs, view } = decision
  const period = limit === 'budget_day' ? 'day' : 'month'
  const resetsAt = resetTimeOf(view, period) ?? Date.now() + retryAfterMs
  const wait = Math.max(1, Math.ceil(retryAfterMs / 1000))
  return new ApiError(
    429,
    `Token budget reached for ${keyId} for the ${period} (UTC): Limit ${limitValue}, Used ${used}, Requested ${requested}. ` +
      `It resets at ${formatResetTime(resetsAt)}; please try again in ${wait}s.`,
    { type: 'budget', code: 'budget_exceeded', headers: { ...headers, ...retryAfterHeaders(retryAfterMs) } },
  )
}

function resetTimeOf(view: LimitView, period: 'day' | 'month'): number | null {
  return view.budgets?.find((budget) => budget.period === period)?.resetsAt ?? null
}

/** Logs and counts it; fails closed with a 503, or returns so that the caller fails open. */
function limiterUnavailable(c: Context<AppEnv>, config: RateLimitConfig, error: unknown): void {
  proxyCounters.rateLimiterUnavailable++
  log('rate_limiter_unavailable', c, error, config.failureMode)
  if (config.failureMode === 'closed') {
    throw new ApiError(503, 'The rate limiter is unavailable; please retry shortly.', {
      code: 'rate_limiter_unavailable',
      headers: retryAfterHeaders(1000),
    })
  }
}

class LimiterTimeout extends Error {
  override name = 'LimiterTimeout'
}

function limiterAnswer<T>(promise: Promise<T>, ms: number): Promise<T> {
  return withTimeout(promise, ms, () => new LimiterTimeout(`no answer within ${ms} ms`))
}

/** One JSON line; the key id and request id are public identifiers, never the key itself. */
function log(event: string, c: Context<AppEnv>, error: unknown, mode?: string): void {
  logEvent(event, { requestId: c.get('requestId'), keyId: c.get('principal').keyId }, error, mode)
}

function logEvent(event: string, ids: { requestId: string; keyId: string }, error: unknown, mode?: string): void {
  console.warn(
    JSON.stringify({
      event,
      requestId: ids.requestId,
      keyId: ids.keyId,
      error: error instanceof Error ? error.name : 'unknown',
      ...(mode ? { failureMode: mode } : {}),
    }),
  )
}
