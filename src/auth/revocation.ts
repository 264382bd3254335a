import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { withTimeout } from '../timeout.ts'

// The fast path of a revocation (docs/keys.md, Revocation) for every route, not only those that
// admit a generation: POST /v1/keys/:id/revoke sets a flag in the key's limiter (a Durable Object,
// src/durable/key-limiter.ts), and the auth middleware asks it, `revoked()`, before the route runs
// (beside it on a route that starts a generation, src/middleware/auth.ts). KV's copy of the record (`disabled: true`) reaches an isolate only after
// KEY_CACHE_TTL_MS and KV's propagation; the flag does not wait for either.
//
// An isolate keeps a "not revoked" answer for REVOCATION_CHECK_TTL_MS, so a key's cheap requests
// (GET /v1/models, stream-token minting) are not a Durable Object call each; a "revoked" answer is
// kept for good, since a revocation is never undone. Concurrent requests of a key share one call.

/**
 * How long an isolate trusts a "not revoked" answer, measured from when it asked. A revocation
 * made through another isolate reaches this one within this time plus one limiter call. At 1 s a
 * key costs its limiter at most one more call per isolate per second however many requests it
 * sends: for a key sending more than one request a second, less than the admission call each of its
 * generations makes anyway. A longer window would save little and put "within seconds" at risk.
 */
export const REVOCATION_CHECK_TTL_MS = 1_000

const MAX_ENTRIES = 10_000

interface Answer {
  revoked: boolean
  /** Trusted until then (epoch ms); a revoked answer, for good. */
  until: number
}

const answers = new Map<string, Answer>()
/** The limiter calls under way, by key: concurrent requests of a key share one; true: revoked. */
const asking = new Map<string, Promise<boolean>>()

/**
 * Throws the revoked-key 401 when the key was revoked through its limiter. A limiter that does not
 * answer within RATE_LIMITER_TIMEOUT_MS, or fails, fails open here, as admission does by default
 * (RATE_LIMITER_FAILURE_MODE=open): the request goes on, logged, and until the limiter answers again
 * only the KV record can stop the key. Not closed even with RATE_LIMITER_FAILURE_MODE=closed: the
 * generations of such a deployment are refused at admission anyway, and its cheap routes (models,
 * stored responses, stream tokens) keep the KV record's revocation. RATE_LIMITS=off turns off the
 * limits, not this check: the limiter still holds the flag and is still asked.
 */
export async function refuseIfRevoked(c: Context<AppEnv>, keyId: string): Promise<void> {
  if (await isRevoked(c, keyId)) throw revokedKey()
}

/** Whether the key was revoked through its limiter: `refuseIfRevoked`'s answer without the 401 (the dashboard signs out instead). */
export async function isRevoked(c: Context<AppEnv>, keyId: string): Promise<boolean> {
  const known = answers.get(keyId)
  if (known && known.until > Date.now()) return known.revoked
  let pending = asking.get(keyId)
  if (!pending) {
    pending = ask(c, keyId).finally(() => asking.delete(keyId))
    asking.set(keyId, pending)
  }
  return pending
}

/** This isolate revoked the key itself (POST /v1/keys/:id/revoke): it needs no call to know. */
export function rememberRevoked(keyId: string): void {
  remember(keyId, { revoked: true, until: Number.POSITIVE_INFINITY })
}

async function ask(c: Context<AppEnv>, keyId: string): Promise<boolean> {
  const { rateLimits } = c.get('config')
  const askedAt = Date.now()
  let asked: Promise<boolean>
  try {
    asked = c.env.LIMITER.get(c.env.LIMITER.idFromName(keyId)).revoked() as Promise<boolean>
  } catch (error) {
    asked = Promise.reject(error instanceof Error ? error : new Error(String(error)))
  }
  const record = (revoked: boolean) =>
    remember(keyId, { revoked, until: revoked ? Number.POSITIVE_INFINITY : askedAt + REVOCATION_CHECK_TTL_MS })
  try {
    const revoked = await withTimeout(
      asked,
      rateLimits.timeoutMs,
      () => new RevocationCheckTimeout(`no answer within ${rateLimits.timeoutMs} ms`),
    )
    record(revoked)
    return revoked
  } catch (error) {
    log(c, keyId, error)
    // Open for this TTL: the key's next requests go on without waiting for the timeout again.
    remember(keyId, { revoked: false, until: askedAt + REVOCATION_CHECK_TTL_MS })
    // A late answer still counts, for the requests after it.
    asked.then(record, () => {})
    return false
  }
}

function remember(keyId: string, answer: Answer): void {
  // A revoked answer is never replaced by an older "not revoked" one that arrives late.
  if (answers.get(keyId)?.revoked && !answer.revoked) return
  // Re-inserted at the end: the oldest entry goes first when the map is full.
  answers.delete(keyId)
  if (answers.size >= MAX_ENTRIES) answers.delete(answers.keys().next().value as string)
  answers.set(keyId, answer)
}

function revokedKey(): ApiError {
  return new ApiError(401, 'This API key has been revoked.', { code: 'invalid_api_key' })
}

class RevocationCheckTimeout extends Error {
  override name = 'RevocationCheckTimeout'
}

/** One JSON line; the key id and request id are public identifiers, never the key itself. */
function log(c: Context<AppEnv>, keyId: string, error: unknown): void {
  console.warn(
    JSON.stringify({
      event: 'revocation_check_unavailable',
      requestId: c.get('requestId'),
      keyId,
      error: error instanceof Error ? error.name : 'unknown',
      failureMode: 'open',
    }),
  )
}
