import type { BudgetState, KeyBoard, KeyReport } from '../limits/key-report.ts'

// The board of keys the telemetry aggregator keeps (src/durable/telemetry-aggregator.ts): the keys
// nearest their budgets and the keys whose hourly usage is flagged, from the reports each key's
// limiter sends after its flushes (src/limits/key-report.ts). Operators read it from GET
// /v1/keys/board, the dashboard and /metrics, so nobody scans every key.
//
// Bounded whatever the number of keys: at most CLOSEST_SIZE keys nearest their budgets and
// FLAGGED_SIZE flagged keys, each one report of at most one budget per period. A report replaces
// the key's last one; a key leaves the board when a report says it no longer belongs there (no
// budget used, no longer flagged), when its budgets' periods have all reset, or when it has not
// reported for REPORT_MAX_AGE_MS (a limiter reports within seconds of any use of its key).

/** How many keys nearest their budgets the board keeps. */
export const CLOSEST_SIZE = 20
/** How many flagged keys the board keeps (the most tokens over the last hour first). */
export const FLAGGED_SIZE = 50
/** A key that has not reported for this long leaves the board. */
export const REPORT_MAX_AGE_MS = 60 * 60_000

const KEY_ID = /^key_[0-9a-f]{16}$/

interface Entry {
  report: KeyReport
  /** When the board received it (its own clock: the age rule never depends on another object's). */
  receivedAt: number
}

/** The highest used/limit over the budgets whose period has not ended; null without one. */
export function usedRatio(budgets: readonly BudgetState[], now: number): number | null {
  let highest: number | null = null
  for (const budget of budgets) {
    if (budget.resetsAt <= now || budget.limit <= 0) continue
    const ratio = budget.used / budget.limit
    if (highest === null || ratio > highest) highest = ratio
  }
  return highest
}

const finite = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value)

/** A well-formed copy of a report, or null: a key id as keys have them, finite numbers, one budget per period. */
export function cleanReport(report: KeyReport): KeyReport | null {
  if (typeof report !== 'object' || report === null || typeof report.keyId !== 'string' || !KEY_ID.test(report.keyId)) return null
  if (!finite(report.at) || !Array.isArray(report.budgets) || typeof report.spike !== 'object' || report.spike === null) return null
  const budgets: BudgetState[] = []
  for (const budget of report.budgets) {
    if (typeof budget !== 'object' || budget === null || (budget.period !== 'day' && budget.period !== 'month')) continue
    if (![budget.limit, budget.used, budget.remaining, budget.resetsAt].every(finite)) continue
    if (budgets.some((kept) => kept.period === budget.period)) continue
    const { period, limit, used, remaining, resetsAt } = budget
    budgets.push({ period, limit, used, remaining, resetsAt })
  }
  const { flagged, hourTokens, normalTokens } = report.spike
  if (typeof flagged !== 'boolean' || !finite(hourTokens) || !finite(normalTokens)) return null
  return { keyId: report.keyId, at: report.at, budgets, spike: { flagged, hourTokens, normalTokens } }
}

/** The board's state. Not persisted: see TelemetryAggregator.reportKey. */
export class KeyBoardState {
  #closest = new Map<string, Entry>()
  #flagged = new Map<string, Entry>()

  /** Takes one key's report; an older report than the one kept (they can cross) is ignored. */
  report(incoming: KeyReport, now: number): void {
    const report = cleanReport(incoming)
    if (report === null) return
    const entry = { report, receivedAt: now }
    const kept = this.#closest.get(report.keyId) ?? this.#flagged.get(report.keyId)
    if (kept !== undefined && kept.report.at > report.at) return

    this.#closest.delete(report.keyId)
    const ratio = usedRatio(report.budgets, now)
    if (ratio !== null && ratio > 0) {
      this.#closest.set(report.keyId, entry)
      if (this.#closest.size > CLOSEST_SIZE) this.#evict(this.#closest, (e) => usedRatio(e.report.budgets, now) ?? 0, now)
    }

    this.#flagged.delete(report.keyId)
    if (report.spike.flagged) {
      this.#flagged.set(report.keyId, entry)
      if (this.#flagged.size > FLAGGED_SIZE) this.#evict(this.#flagged, (e) => e.report.spike.hourTokens, now)
    }
  }

  /** The keys nearest their budgets (highest share used first) and the flagged keys (most tokens over the last hour first). */
  board(now: number): KeyBoard {
    this.#prune(now)
    const closest = [...this.#closest.values()]
      .map((entry) => ({
        report: { ...entry.report, budgets: entry.report.budgets.filter((budget) => budget.resetsAt > now) },
        ratio: usedRatio(entry.report.budgets, now) ?? 0,
      }))
      .filter((ranked) => ranked.ratio > 0)
      .sort((a, b) => b.ratio - a.ratio || a.report.keyId.localeCompare(b.report.keyId))
      .map((ranked) => ranked.report)
    const flagged = [...this.#flagged.values()]
      .map((entry) => entry.report)
      .sort((a, b) => b.spike.hourTokens - a.spike.hourTokens || a.keyId.localeCompare(b.keyId))
    return { closest, flagged }
  }

  /** How many reports the board holds now (never more than CLOSEST_SIZE + FLAGGED_SIZE). */
  get size(): number {
    return this.#closest.size + this.#flagged.size
  }

  /** Drops the stale entries, then the one ranked lowest. */
  #evict(entries: Map<string, Entry>, rank: (entry: Entry) => number, now: number): void {
    this.#prune(now)
    if (entries.size <= (entries === this.#closest ? CLOSEST_SIZE : FLAGGED_SIZE)) return
    let lowest: [string, number] | null = null
    for (const [keyId, entry] of entries) {
      const value = rank(entry)
      if (lowest === null || value < lowest[1]) lowest = [keyId, value]
    }
    if (lowest !== null) entries.delete(lowest[0])
  }

  #prune(now: number): void {
    for (const [keyId, entry] of this.#closest) {
      if (now - entry.receivedAt > REPORT_MAX_AGE_MS || usedRatio(entry.report.budgets, now) === null) this.#closest.delete(keyId)
    }
    for (const [keyId, entry] of this.#flagged) if (now - entry.receivedAt > REPORT_MAX_AGE_MS) this.#flagged.delete(keyId)
  }
}
