import type { Context } from 'hono'
import { keyWeight } from '../auth/key-record.ts'
import { findKeyById } from '../auth/key-store.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { effectiveLimits } from '../limits/admit.ts'
import type { BudgetPeriod, BudgetState } from '../limits/key-report.ts'

/**
 * GET /v1/keys/:id/limits (admin scope): a key's effective limits, where each comes from (its
 * record or the deployment default), its priority class (standard when its record has none), its
 * weight in the edge queue (1 when its record has none), its token budgets per UTC day and month
 * (null: none; src/limits/budget.ts) with what is used of them, the spike rule's view of it
 * (src/limits/usage-spike.ts), and its live usage from its limiter. The key CLI's `usage` command
 * reads this; it works the same against `wrangler dev` and a deployment.
 */
export async function keyLimits(c: Context<AppEnv>): Promise<Response> {
  const id = c.req.param('id') ?? ''
  // Read past the isolate's key cache, so a change made with the CLI shows at once.
  const record = /^key_[0-9a-f]{16}$/.test(id) ? await findKeyById(c.env.KEYS, id, 0) : null
  if (!record) throw new ApiError(404, `No API key with id '${id}'.`, { param: 'id', code: 'key_not_found' })
  const { rateLimits } = c.get('config')
  const limits = effectiveLimits(record, rateLimits)
  const status = await c.env.LIMITER.get(c.env.LIMITER.idFromName(id)).status(limits)
  const from = (value: number | null) => (value === null ? 'default' : 'key')
  const budget = (period: BudgetPeriod) => budgetJson(status.budgets.find((state) => state.period === period))
  return c.json({
    object: 'key.limits',
    key_id: id,
    enforced: rateLimits.enabled,
    priority: record.priority ?? 'standard',
    weight: keyWeight(record),
    limits: {
      requests_per_minute: limits.requestsPerMinute,
      tokens_per_minute: limits.tokensPerMinute,
      concurrent_streams: limits.concurrentStreams,
      concurrent_streams_per_ip: limits.concurrentStreamsPerIp,
      max_output_tokens: record.limits.maxOutputTokens,
    },
    source: {
      requests_per_minute: from(record.limits.requestsPerMinute),
      tokens_per_minute: from(record.limits.tokensPerMinute),
      concurrent_streams: from(record.limits.concurrentStreams),
    },
    budgets: { day: budget('day'), month: budget('month') },
    spike: { flagged: status.spike.flagged, hour_tokens: status.spike.hourTokens, normal_tokens: status.spike.normalTokens },
    usage: {
      in_flight: status.inFlight,
      requests: { limit: status.view.requests.limit, remaining: status.view.requests.remaining, reset_ms: status.view.requests.resetMs },
      tokens: { limit: status.view.tokens.limit, remaining: status.view.tokens.remaining, reset_ms: status.view.tokens.resetMs },
      totals: {
        admitted: status.totals.admitted,
        refused: status.totals.refused,
        prompt_tokens: status.totals.promptTokens,
        completion_tokens: status.totals.completionTokens,
        expired_leases: status.totals.expiredLeases,
      },
    },
  })
}

/** A budget on the wire: tokens, and when it resets in Unix seconds; null: the key has none for the period. */
function budgetJson(state: BudgetState | undefined) {
  if (!state) return null
  return { limit: state.limit, used: state.used, remaining: state.remaining, resets_at: Math.floor(state.resetsAt / 1000) }
}
