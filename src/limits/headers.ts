import type { LimitView } from './ledger.ts'

/**
 * The reset durations of OpenAI's rate-limit headers: "20ms", "8.64s", "6m0s", "1h2m3s".
 * Clients and SDKs written against OpenAI parse this form.
 */
export function formatResetDuration(ms: number): string {
  const exact = Math.max(0, Math.ceil(ms))
  if (exact < 1000) return `${exact}ms`
  // Seconds keep two decimals: round up to 10 ms first, so 59.999 s reads 1m0s, not 60s.
  const total = Math.ceil(exact / 10) * 10
  const hours = Math.floor(total / 3_600_000)
  const minutes = Math.floor((total % 3_600_000) / 60_000)
  const seconds = (total % 60_000) / 1000
  const secondsText = `${Number(seconds.toFixed(2))}s` // 8.64s, 8.5s, 8s
  if (hours > 0) return `${hours}h${minutes}m${secondsText}`
  if (minutes > 0) return `${minutes}m${secondsText}`
  return secondsText
}

/** A budget's reset as the headers and messages give it: ISO 8601 UTC to the second, 2026-12-08T00:00:00Z. */
export function formatResetTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/**
 * OpenAI's six x-ratelimit-* headers, sent on every admitted or refused request; for a key with a
 * token budget, three more per budget (src/limits/budget.ts): x-budget-limit-day, x-budget-remaining-day
 * (tokens, after this request's reservation) and x-budget-reset-day (when the period ends and the
 * budget is whole again: an ISO 8601 UTC time, a fixed instant that stays true however late it is read),
 * and the same with -month.
 */
export function rateLimitHeaders(view: LimitView): Record<string, string> {
  const headers: Record<string, string> = {
    'x-ratelimit-limit-requests': String(view.requests.limit),
    'x-ratelimit-remaining-requests': String(view.requests.remaining),
    'x-ratelimit-reset-requests': formatResetDuration(view.requests.resetMs),
    'x-ratelimit-limit-tokens': String(view.tokens.limit),
    'x-ratelimit-remaining-tokens': String(view.tokens.remaining),
    'x-ratelimit-reset-tokens': formatResetDuration(view.tokens.resetMs),
  }
  for (const budget of view.budgets ?? []) {
    headers[`x-budget-limit-${budget.period}`] = String(budget.limit)
    headers[`x-budget-remaining-${budget.period}`] = String(budget.remaining)
    headers[`x-budget-reset-${budget.period}`] = formatResetTime(budget.resetsAt)
  }
  return headers
}

/**
 * Retry-After in whole seconds (at least 1, as HTTP wants an integer), and retry-after-ms, which
 * the openai SDKs read first, for the precise wait.
 */
export function retryAfterHeaders(ms: number): Record<string, string> {
  const wait = Math.max(1, Math.ceil(ms))
  return { 'retry-after': String(Math.ceil(wait / 1000)), 'retry-after-ms': String(wait) }
}
