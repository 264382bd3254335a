import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import type { Background } from './stale-cache.ts'

/** The request's waitUntil, for caches that re-read after the response instead of before it. */
export function requestBackground(c: Context<AppEnv>): Background | undefined {
  try {
    const ctx = c.executionCtx
    return (work) => ctx.waitUntil(work)
  } catch {
    // No execution context (app.request in a test): nothing can run after the response, so wait.
    return undefined
  }
}
