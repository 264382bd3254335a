// Keys with explicit limits, and reading a key's limiter state through the admin endpoint.
import { env } from 'cloudflare:workers'
import type { KeyLimits } from '../../src/auth/key-record.ts'
import type { EndReason } from '../../src/ending.ts'
import type { AdmitInput, EffectiveLimits, TokenUse } from '../../src/limits/ledger.ts'
import { callWorker } from './worker.ts'
import { randomSecret, seedKey } from './keys.ts'

export interface LimitedKey {
  id: string
  secret: string
}

export async function keyWithLimits(limits: Partial<KeyLimits>): Promise<LimitedKey> {
  const secret = randomSecret()
  const record = await seedKey(env.KEYS, secret, {
    limits: { requestsPerMinute: null, tokensPerMinute: null, concurrentStreams: null, maxOutputTokens: null, ...limits },
  })
  return { id: record.id, secret }
}

let adminSecret: string | null = null

export interface KeyLimitsBody {
  limits: { requests_per_minute: number; tokens_per_minute: number; concurrent_streams: number }
  usage: {
    in_flight: number
    requests: { limit: number; remaining: number; reset_ms: number }
    tokens: { limit: number; remaining: number; reset_ms: number }
    totals: { admitted: number; prompt_tokens: number; completion_tokens: number; refused: Record<string, number> }
  }
}

/** GET /v1/keys/:id/limits with an admin key made for the purpose. */
export async function limiterState(keyId: string): Promise<KeyLimitsBody> {
  if (adminSecret === null) {
    adminSecret = randomSecret()
    await seedKey(env.KEYS, adminSecret, { scopes: ['admin'] })
  }
  const response = await callWorker(`/v1/keys/${keyId}/limits`, { headers: { authorization: `Bearer ${adminSecret}` } })
  if (!response.ok) throw new Error(`limits of ${keyId}: ${response.status} ${await response.text()}`)
  return (await response.json()) as KeyLimitsBody
}

export const RATE_LIMIT_HEADERS = [
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
]

/**
 * The real LIMITER namespace, whose `admit` answers only once `reached()` exceeds `seenBefore` (a
 * backend counter: the backend call got there first) or after `waitMs`: a limiter far away, slower
 * than a backend call. `observed` records, per admission, whether the backend got there first (a
 * speculative start). `settle` and `status` go straight to the real limiter.
 */
export function distantLimiter(reached: () => Promise<number>, seenBefore: number, waitMs: number) {
  const observed: boolean[] = []
  const namespace = {
    idFromName: (name: string) => env.LIMITER.idFromName(name),
    get(id: DurableObjectId) {
      const stub = env.LIMITER.get(id)
      return {
        async admit(input: AdmitInput) {
          const deadline = Date.now() + waitMs
          let called = false
          while (!called && Date.now() < deadline) {
            called = (await reached()) > seenBefore
            if (!called) await new Promise((resolve) => setTimeout(resolve, 10))
          }
          observed.push(called)
          return stub.admit(input)
        },
        settle: (leaseId: string, used: TokenUse, reason?: EndReason) => stub.settle(leaseId, used, reason),
        status: (limits: EffectiveLimits) => stub.status(limits),
      }
    },
  }
  return { namespace, observed }
}
