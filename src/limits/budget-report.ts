// When a key's limiter sends its KeyReport (src/limits/key-report.ts) to the board in the telemetry
// aggregator. Pure: the limiter asks after each flush of its storage, so a key nobody uses sends
// nothing, and one RPC carries at most one report.
//
// The bound, per key:
// - a key with a budget, or flagged by the spike rule, reports at most once every REPORT_EVERY_MS
//   (10 s) while it is used;
// - a change the board must see at once (the spike flag turning on or off, a budget becoming spent
//   or whole again, the key's budgets set or removed) is reported after the flush that sees it,
//   still at most once every REPORT_CHANGE_MS (1 s): a key whose used tokens sit at its budget
//   (reservations pushing it over, settlements taking it back) cannot send more than that;
// - a key without a budget that was never flagged sends nothing.
// So at worst one report a second per key, and one every 10 s in the steady state.

import type { KeyReport } from './key-report.ts'

export const REPORT_EVERY_MS = 10_000
export const REPORT_CHANGE_MS = 1_000

/** What the last report said, as far as the bound is concerned. */
export interface ReportedState {
  at: number
  budgeted: boolean
  spent: boolean
  flagged: boolean
}

export function reportedState(report: KeyReport): ReportedState {
  return {
    at: report.at,
    budgeted: report.budgets.length > 0,
    spent: report.budgets.some((budget) => budget.remaining <= 0),
    flagged: report.spike.flagged,
  }
}

/**
 * When the report just built should go to the board, given the last one sent (null: none yet): 0
 * now, a number of ms later (a change the bound holds back: the limiter tries again then), or null
 * (not needed: the next flush will say more).
 */
export function reportDelay(last: ReportedState | null, next: ReportedState): number | null {
  if (last === null) return next.budgeted || next.flagged ? 0 : null
  const since = next.at - last.at
  const changed = next.budgeted !== last.budgeted || next.spent !== last.spent || next.flagged !== last.flagged
  if (changed) return Math.max(0, REPORT_CHANGE_MS - since)
  return (next.budgeted || next.flagged) && since >= REPORT_EVERY_MS ? 0 : null
}
