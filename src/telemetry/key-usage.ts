import type { Context } from 'hono'
import { findKeyById } from '../auth/key-store.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import type { BudgetPeriod, KeyBoard, KeyReport, UsageDay } from '../limits/key-report.ts'
import { aggregatorOf } from './buffer.ts'

// A key's spending as operators read it (docs/keys.md, Usage history and the board), shared by the
// admin API (src/routes/key-usage.ts) and the dashboard's Keys section (src/routes/dashboard.ts):
// the key's tokens and requests per UTC day, read from the key's own limiter (which writes them
// where it counts the requests: no scan of every key), and the board of keys nearest their budgets
// and flagged, from the telemetry aggregator (src/telemetry/key-board.ts), in snake_case.

export const DEFAULT_HISTORY_DAYS = 30
export const MAX_HISTORY_DAYS = 400
const DAY_MS = 86_400_000

/** One day of the answer (snake_case, as on the wire). */
export interface UsageDayJson {
  date: string
  requests: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface UsageHistoryJson {
  object: 'key.usage_history'
  key_id: string
  /** Every UTC day of the range, oldest first, today last; a day without use is zeros. */
  days: UsageDayJson[]
}

/** `?days=`: a whole number 1..MAX_HISTORY_DAYS, DEFAULT_HISTORY_DAYS when absent; anything else is a 400. */
export function historyDays(value: string | undefined): number {
  if (value === undefined) return DEFAULT_HISTORY_DAYS
  const days = /^\d{1,3}$/.test(value) ? Number(value) : Number.NaN
  if (!(days >= 1 && days <= MAX_HISTORY_DAYS)) {
    throw new ApiError(400, `days must be a whole number from 1 to ${MAX_HISTORY_DAYS} (default ${DEFAULT_HISTORY_DAYS}).`, {
      param: 'days',
      code: 'invalid_value',
    })
  }
  return days
}

/** The last `days` UTC dates (YYYY-MM-DD), oldest first, ending with today's. */
export function dayRange(days: number, now: number): string[] {
  const today = Math.floor(now / DAY_MS) * DAY_MS
  return Array.from({ length: days }, (_, i) => new Date(today - (days - 1 - i) * DAY_MS).toISOString().slice(0, 10))
}

/** The limiter's rows (days without use may be missing) over every day of the range, zeros filled. */
export function fillDays(rows: readonly UsageDay[], days: number, now: number): UsageDayJson[] {
  const byDate = new Map(rows.map((row) => [row.date, row]))
  return dayRange(days, now).map((date) => {
    const row = byDate.get(date)
    const requests = row?.requests ?? 0
    const prompt = row?.promptTokens ?? 0
    const completion = row?.completionTokens ?? 0
    return { date, requests, prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
  })
}

/** A key's history from its limiter; 404 for an id that names no key (as GET /v1/keys/:id/limits). */
export async function usageHistoryOf(c: Context<AppEnv>, id: string, days: number): Promise<UsageHistoryJson> {
  // Read past the isolate's key cache, so a key made a moment ago is found.
  const record = /^key_[0-9a-f]{16}$/.test(id) ? await findKeyById(c.env.KEYS, id, 0) : null
  if (!record) throw new ApiError(404, `No API key with id '${id}'.`, { param: 'id', code: 'key_not_found' })
  const rows = await c.env.LIMITER.get(c.env.LIMITER.idFromName(id)).usageHistory(days)
  return { object: 'key.usage_history', key_id: id, days: fillDays(rows, days, Date.now()) }
}

/** One key on the board (snake_case, as on the wire; times in Unix ms). */
export interface BoardEntryJson {
  key_id: string
  reported_at: number
  budgets: {
    period: BudgetPeriod
    limit: number
    used: number
    remaining: number
    /** used / limit, to 4 decimals; null for a limit of 0. */
    used_ratio: number | null
    resets_at: number
  }[]
  spike: { flagged: boolean; hour_tokens: number; normal_tokens: number }
}

export interface KeyBoardJson {
  object: 'key.board'
  closest: BoardEntryJson[]
  flagged: BoardEntryJson[]
}

function reportJson(report: KeyReport): BoardEntryJson {
  return {
    key_id: report.keyId,
    reported_at: report.at,
    budgets: report.budgets.map((budget) => ({
      period: budget.period,
      limit: budget.limit,
      used: budget.used,
      remaining: budget.remaining,
      used_ratio: budget.limit > 0 ? Math.round((budget.used / budget.limit) * 1e4) / 1e4 : null,
      resets_at: budget.resetsAt,
    })),
    spike: { flagged: report.spike.flagged, hour_tokens: report.spike.hourTokens, normal_tokens: report.spike.normalTokens },
  }
}

export function boardJson(board: KeyBoard): KeyBoardJson {
  return { object: 'key.board', closest: board.closest.map(reportJson), flagged: board.flagged.map(reportJson) }
}

/** The board, from the telemetry aggregator. */
export async function readBoard(c: Context<AppEnv>): Promise<KeyBoardJson> {
  return boardJson(await aggregatorOf(c.env).keyBoard())
}
