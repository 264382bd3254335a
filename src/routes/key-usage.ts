import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { historyDays, readBoard, usageHistoryOf } from '../telemetry/key-usage.ts'

/**
 * GET /v1/keys/:id/usage?days=N (admin scope): the key's requests and tokens per UTC day over the
 * last N days (1..400, default 30), every day present, from the key's limiter; 400 for a bad
 * `days`, 404 for an unknown key (docs/keys.md, Usage history and the board). The key CLI's
 * `usage --days` reads it.
 */
export async function keyUsage(c: Context<AppEnv>): Promise<Response> {
  const days = historyDays(c.req.query('days'))
  return c.json(await usageHistoryOf(c, c.req.param('id') ?? '', days))
}

/** GET /v1/keys/board (admin scope): the keys nearest their budgets and the flagged keys. The key CLI's `board` reads it. */
export async function keyBoard(c: Context<AppEnv>): Promise<Response> {
  return c.json(await readBoard(c))
}
