import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { aggregatorOf } from '../telemetry/buffer.ts'
import { renderPrometheus } from '../telemetry/prometheus.ts'

/**
 * GET /metrics (admin): Prometheus text for the whole proxy, not one isolate. A scrape lands on
 * whichever isolate is nearest; the totals come from the aggregator, so they are the same from
 * any of them (up to TELEMETRY_BATCH_MS behind).
 */
export async function metrics(c: Context<AppEnv>): Promise<Response> {
  const snapshot = await aggregatorOf(c.env).metrics()
  return c.body(renderPrometheus(snapshot), 200, {
    'content-type': 'text/plain; version=0.0.4; charset=utf-8',
    'cache-control': 'no-store',
  })
}
