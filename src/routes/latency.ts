import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { readWindow } from '../telemetry/buckets.ts'
import { latencyQuery, latencyReport } from '../telemetry/latency-report.ts'

/**
 * GET /v1/latency?window=5m|1h|24h[&backend=ID] (admin): request counts, time to first token
 * (p50/p90/p99, as produced by the backend and as received by the client), the wait at the edge
 * for a free slot (p50/p90/p99 over the requests that waited, and how many did), decode speed, and
 * error, abort and refusal rates, from the LATENCY namespace. Up to LATENCY_FLUSH_MS plus KV's
 * propagation behind live traffic.
 */
export async function latency(c: Context<AppEnv>): Promise<Response> {
  const { window, backend } = latencyQuery(c)
  const now = Date.now()
  const buckets = await readWindow(c.env.LATENCY, window, now)
  c.header('cache-control', 'no-store')
  return c.json(latencyReport(buckets, window, now, backend))
}
