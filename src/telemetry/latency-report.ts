import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { WINDOWS, mergeBuckets, type LatencyBucket, type WindowName } from './buckets.ts'
import { emptyStats, summarize, type LatencySummary } from './stats.ts'

// The latency report over a window's buckets, served by GET /v1/latency and in the dashboard's data.

/** The query both the latency API and the dashboard's data take: window and an optional backend. */
export function latencyQuery(c: Context<AppEnv>): { window: WindowName; backend: string | null } {
  const window = c.req.query('window') ?? '5m'
  if (!(window in WINDOWS)) {
    throw new ApiError(400, `window must be one of ${Object.keys(WINDOWS).join(', ')}.`, { param: 'window', code: 'invalid_window' })
  }
  const backend = c.req.query('backend') ?? null
  if (backend !== null && !/^[A-Za-z0-9._:-]{1,64}$/.test(backend)) {
    throw new ApiError(400, 'backend must be a backend id.', { param: 'backend', code: 'invalid_backend' })
  }
  return { window: window as WindowName, backend }
}

export interface LatencyReport {
  object: 'latency.report'
  window: WindowName
  from: number
  to: number
  overall: LatencySummary
  backends: Record<string, LatencySummary>
}

/** Per backend and overall, over the window's buckets (a backend filter keeps only that one). */
export function latencyReport(buckets: readonly LatencyBucket[], window: WindowName, now: number, backend: string | null): LatencyReport {
  const { backends, overall } = mergeBuckets(buckets)
  const picked = backend === null ? Object.keys(backends).sort() : [backend]
  return {
    object: 'latency.report',
    window,
    from: buckets[0]?.start ?? now,
    to: now,
    overall: summarize(backend === null ? overall : (backends[backend] ?? emptyStats())),
    backends: Object.fromEntries(picked.map((id) => [id, summarize(backends[id] ?? emptyStats())])),
  }
}
