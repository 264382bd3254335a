// How key records and usage read in a terminal. Never given a secret or a hash: create prints the
// secret itself, once.
import { DEFAULT_KEY_WEIGHT, isKeyWeight, keyWeight, type KeyLimits, type KeyRecord } from '../../src/auth/key-record.ts'
import type { KeyUsage } from './usage.ts'
import { columns } from '../cli-support.ts'

export type KeyStatus = 'active' | 'disabled' | 'expired'

/** Disabled wins over expired: revocation is the deliberate act an operator looks for. */
export function keyStatus(record: KeyRecord, now = Date.now()): KeyStatus {
  if (record.disabled) return 'disabled'
  if (record.expires !== null && record.expires * 1000 <= now) return 'expired'
  return 'active'
}

function formatTime(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace('.000Z', 'Z')
}

function formatExpiry(record: KeyRecord): string {
  return record.expires === null ? 'never' : formatTime(record.expires)
}

/** The limits that fall back to a deployment default; the budgets have none (describeBudgets). */
type DefaultedLimit = Exclude<keyof KeyLimits, 'budgetDay' | 'budgetMonth'>

const LIMIT_LABELS: Record<DefaultedLimit, string> = {
  requestsPerMinute: 'requests/min',
  tokensPerMinute: 'tokens/min',
  concurrentStreams: 'concurrent streams',
  maxOutputTokens: 'max output tokens',
}

const LIMIT_NAMES = Object.keys(LIMIT_LABELS) as DefaultedLimit[]

function formatLimits(limits: KeyLimits): string {
  const set = LIMIT_NAMES.filter((name) => limits[name] !== null).map((name) => `${LIMIT_LABELS[name]} ${limits[name]}`)
  return set.length === 0 ? 'deployment defaults' : `${set.join(', ')} (others: deployment defaults)`
}

/** A record's budget: a whole number of tokens, or none (absent, null, or anything else the Worker ignores). */
function budgetOf(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null
}

/** A key's token budgets (docs/keys.md, Budgets): `day 100000 tokens, month 2000000 tokens`, or none. */
export function describeBudgets(limits: KeyLimits): string {
  const day = budgetOf(limits.budgetDay)
  const month = budgetOf(limits.budgetMonth)
  const set = [...(day === null ? [] : [`day ${day} tokens`]), ...(month === null ? [] : [`month ${month} tokens`])]
  return set.length === 0 ? 'none' : set.join(', ')
}

/** The record as labelled lines, for create and show. */
export function describeRecord(record: KeyRecord, now = Date.now()): string {
  const rows: [string, string][] = [
    ['id', record.id],
    ['name', record.name],
    ['scopes', record.scopes.join(',')],
    ['status', keyStatus(record, now)],
    ['created', formatTime(record.created)],
    ['expires', formatExpiry(record)],
    ['limits', formatLimits(record.limits)],
    ['budgets', describeBudgets(record.limits)],
    ['origins', record.origins.length === 0 ? 'none (no browser use)' : record.origins.join(', ')],
  ]
  const rules = Object.entries(record.rules ?? {})
  if (rules.length > 0) rows.push(['rules', rules.map(([rule, on]) => `${rule}=${on ? 'on' : 'off'}`).join(', ')])
  if (record.hedging !== undefined) rows.push(['hedging', describeHedging(record)])
  rows.push(['priority', describePriority(record)])
  rows.push(['weight', describeWeight(record)])
  return rows.map(([label, value]) => `${label.padEnd(8)} ${value}`).join('\n')
}

/** A key's hedging switch (docs/fleet.md, Hedging). */
export function describeHedging(record: KeyRecord): string {
  return record.hedging === false ? 'off' : record.hedging === true ? 'on (as the deployment allows)' : 'deployment default'
}

/** A key's priority class (docs/keys.md, Priority); a record without one is standard. */
export function describePriority(record: KeyRecord): string {
  return record.priority ?? 'standard (default)'
}

/**
 * A key's weight in the edge queue (docs/keys.md, Weight); a record without one has weight 1. A
 * stored value that is not a valid weight is shown as the Worker reads it: as the default.
 */
export function describeWeight(record: KeyRecord): string {
  if (record.weight === undefined) return `${DEFAULT_KEY_WEIGHT} (default)`
  return isKeyWeight(record.weight)
    ? String(record.weight)
    : `${JSON.stringify(record.weight)} (not a valid weight: counts as ${keyWeight(record)})`
}

/**
 * Every limit on its own line, for the limits command; the hedging switch, the priority class and
 * the weight too when they were changed.
 */
export function describeLimits(
  limits: KeyLimits,
  hedging: string | null = null,
  priority: string | null = null,
  weight: string | null = null,
): string {
  const rows = LIMIT_NAMES.map((name) => [`  ${LIMIT_LABELS[name]}`, String(limits[name] ?? 'deployment default')])
  rows.push(['  budget per day', String(budgetOf(limits.budgetDay) ?? 'none')])
  rows.push(['  budget per month', String(budgetOf(limits.budgetMonth) ?? 'none')])
  if (hedging !== null) rows.push(['  hedging', hedging])
  if (priority !== null) rows.push(['  priority', priority])
  if (weight !== null) rows.push(['  weight', weight])
  return columns(rows)
}

/** One line a key, in aligned columns. */
export function formatList(records: readonly KeyRecord[], now = Date.now()): string {
  if (records.length === 0) return 'No keys.'
  const header = ['ID', 'NAME', 'SCOPES', 'STATUS', 'EXPIRES']
  const rows = records.map((record) => [record.id, record.name, record.scopes.join(','), keyStatus(record, now), formatExpiry(record)])
  return columns([header, ...rows])
}

function formatReset(ms: number): string {
  return ms <= 0 ? '-' : `${Math.ceil(ms / 1000)} s`
}

const REFUSAL_LABELS: Record<string, string> = {
  requests: 'requests/min',
  tokens: 'tokens/min',
  concurrent_streams: 'concurrent streams',
  concurrent_streams_per_ip: 'streams per IP',
  slow_requests: 'paused for slow requests',
  budget_day: 'budget per day',
  budget_month: 'budget per month',
}

type BudgetUsage = NonNullable<NonNullable<KeyUsage['budgets']>['day']>

/** A budget's row of the usage table; none when the key has no budget for the period. */
function budgetRow(label: string, budget: BudgetUsage | null | undefined): string[][] {
  if (!budget || ![budget.limit, budget.used, budget.remaining, budget.resets_at].every((n) => typeof n === 'number')) return []
  const reset = new Date(budget.resets_at * 1000).toISOString().replace('.000Z', 'Z')
  return [[label, String(budget.limit), 'key', String(budget.used), String(budget.remaining), reset]]
}

/** The usage command's table: each limit, where it comes from, what is used and left of it. */
export function formatUsage(answer: KeyUsage): string {
  const { limits, source, usage } = answer
  const windowRow = (label: string, value: number, from: string, window: KeyUsage['usage']['requests']) => [
    label,
    String(value),
    from,
    String(Math.max(0, window.limit - window.remaining)),
    String(window.remaining),
    formatReset(window.reset_ms),
  ]
  const maxOutput = limits.max_output_tokens
  const table = columns([
    ['LIMIT', 'VALUE', 'SOURCE', 'USED', 'REMAINING', 'RESET'],
    windowRow('requests/min', limits.requests_per_minute, source.requests_per_minute, usage.requests),
    windowRow('tokens/min', limits.tokens_per_minute, source.tokens_per_minute, usage.tokens),
    [
      'concurrent streams',
      String(limits.concurrent_streams),
      source.concurrent_streams,
      String(usage.in_flight),
      String(Math.max(0, limits.concurrent_streams - usage.in_flight)),
      '-',
    ],
    ['streams per IP', String(limits.concurrent_streams_per_ip ?? 'off'), 'deployment', '-', '-', '-'],
    ['max output tokens', String(maxOutput ?? '-'), maxOutput === null ? 'default' : 'key', '-', '-', '-'],
    ...budgetRow('budget per day', answer.budgets?.day),
    ...budgetRow('budget per month', answer.budgets?.month),
  ])
  const noBudget = answer.budgets !== undefined && !answer.budgets.day && !answer.budgets.month
  const { totals } = usage
  const refused = Object.entries(totals.refused).map(([limit, count]) => `${REFUSAL_LABELS[limit] ?? limit} ${count}`)
  return [
    `${answer.key_id}: ${answer.enforced ? 'limits enforced' : 'limits NOT enforced (RATE_LIMITS=off): the numbers are what would apply'}`,
    table,
    ...(noBudget ? ['token budgets: none'] : []),
    ...(answer.priority === undefined ? [] : [`priority class: ${answer.priority}`]),
    ...(answer.weight === undefined ? [] : [`weight: ${answer.weight}`]),
    '',
    `Since the limiter started: ${totals.admitted} admitted; refused: ${refused.join(', ') || 'none'};`,
    `${totals.prompt_tokens} prompt and ${totals.completion_tokens} completion tokens; ${totals.expired_leases} expired leases.`,
  ].join('\n')
}
