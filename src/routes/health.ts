import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'

/** GET /health: the Worker itself is up and configured. It does not probe the backends. */
export function health(c: Context<AppEnv>): Response {
  return c.json({ status: 'ok', backends: c.get('config').backends.length })
}
