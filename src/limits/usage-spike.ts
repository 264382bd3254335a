// The spike rule: is a key's usage over the last hour far above its own recent normal? A leaked
// key shows here before its budget runs out. Pure: the key's limiter (src/durable/key-limiter.ts)
// keeps the hourly token totals (HourlyTokens) and asks `spikeState`.
//
// The rule (docs/keys.md, "Budgets and history"):
// - last hour: the tokens settled in the current UTC hour, plus the previous hour's in proportion
//   to the part of it still within the last 60 minutes (the sliding-window estimate from two
//   fixed buckets);
// - normal: the median of the key's active hours (hours with any settled tokens) among the 168
//   complete hours (7 days) before the previous hour. Active hours only: the median of all hours is
//   0 for any key idle more than half the time (an app used in office hours, a nightly batch job),
//   and the rule would then flag every busy hour of every such key on the floor alone. The previous
//   hour is left out because the last hour overlaps it: a spike must not raise its own normal.
// - flagged when last hour > max(SPIKE_FACTOR x normal, SPIKE_FLOOR_TOKENS), and only once the key
//   has SPIKE_MIN_HISTORY_HOURS of history (its first settled tokens at least 24 h ago): a
//   brand-new key has no normal yet (its budget is what bounds it then). The floor keeps small keys
//   quiet: 8x of a few hundred tokens is nothing worth an operator's look.

import type { SpikeState } from './key-report.ts'

export const HOUR_MS = 3_600_000
/** How many times its normal a key's last hour must be to be flagged. */
export const SPIKE_FACTOR = 8
/** Below this many tokens in the last hour a key is never flagged. */
export const SPIKE_FLOOR_TOKENS = 50_000
/** A key is judged only once its first settled tokens are at least this many hours old. */
export const SPIKE_MIN_HISTORY_HOURS = 24
/** The hours the normal is taken from: 7 days. */
export const NORMAL_HOURS = 168
/** Hourly buckets kept: the current hour, the previous one, and the NORMAL_HOURS before them. */
export const HOURS_KEPT = NORMAL_HOURS + 2

/** A UTC hour as a number: hours since 1970-01-01T00:00Z. */
export function hourNumber(ms: number): number {
  return Math.floor(ms / HOUR_MS)
}

/** What the rule reads: tokens settled per hour number, and the hour of the key's first settled tokens. */
export interface HourlyUsage {
  hours: ReadonlyMap<number, number>
  /** null: the key never settled a token (since this rule existed). */
  firstHour: number | null
}

export function spikeState(usage: HourlyUsage, now: number): SpikeState {
  const hour = hourNumber(now)
  const { hours, firstHour } = usage
  const elapsed = (now - hour * HOUR_MS) / HOUR_MS
  const hourTokens = Math.round((hours.get(hour) ?? 0) + (hours.get(hour - 1) ?? 0) * (1 - elapsed))
  if (firstHour === null || hour - firstHour < SPIKE_MIN_HISTORY_HOURS) return { flagged: false, hourTokens, normalTokens: 0 }
  const active: number[] = []
  for (let h = hour - 2; h >= hour - 1 - NORMAL_HOURS && h >= firstHour; h--) {
    const tokens = hours.get(h) ?? 0
    if (tokens > 0) active.push(tokens)
  }
  const normalTokens = median(active)
  return { flagged: hourTokens > Math.max(SPIKE_FACTOR * normalTokens, SPIKE_FLOOR_TOKENS), hourTokens, normalTokens }
}

/** The median (the mean of the two middle values for an even count); 0 for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

/** Where the hourly totals go: the limiter's storage (`h:<hour number>`, `hfirst`). */
export interface HourlyStore {
  saveHour(hour: number, tokens: number): void
  dropHour(hour: number): void
  saveFirstHour(hour: number): void
}

/** A key's settled tokens per UTC hour, HOURS_KEPT hours of them: what the spike rule reads. */
export class HourlyTokens implements HourlyUsage {
  #hours: Map<number, number>
  #firstHour: number | null
  #store: HourlyStore | null
  #prunedFor = Number.NEGATIVE_INFINITY

  constructor(usage: Partial<HourlyUsage> = {}, store: HourlyStore | null = null) {
    this.#hours = new Map(usage.hours ?? [])
    this.#firstHour = usage.firstHour ?? null
    this.#store = store
  }

  get hours(): ReadonlyMap<number, number> {
    return this.#hours
  }

  get firstHour(): number | null {
    return this.#firstHour
  }

  /** Counts tokens settled at `now` in its hour. Nothing is written for a request that used none. */
  add(tokens: number, now: number): void {
    if (tokens <= 0) return
    const hour = hourNumber(now)
    if (this.#firstHour === null) {
      this.#firstHour = hour
      this.#store?.saveFirstHour(hour)
    }
    const total = (this.#hours.get(hour) ?? 0) + tokens
    this.#hours.set(hour, total)
    this.#store?.saveHour(hour, total)
    if (hour > this.#prunedFor) this.#prune(hour)
  }

  #prune(hour: number): void {
    this.#prunedFor = hour
    for (const old of this.#hours.keys()) {
      if (old > hour - HOURS_KEPT) continue
      this.#hours.delete(old)
      this.#store?.dropHour(old)
    }
  }
}
