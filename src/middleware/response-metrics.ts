import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../env.ts'
import { countResponse, sendSoon } from '../telemetry/buffer.ts'

/**
 * Counts every response by route pattern (not the path: ids would explode the label set) and
 * status, for /metrics. Errors are counted too: Hono's error handler has already made the
 * response when this runs.
 */
export const responseMetrics = createMiddleware<AppEnv>(async function responseMetrics(c, next) {
  await next()
  // After the chain, routePath is the pattern of the last handler that ran; `/*` means none matched.
  const route = c.req.routePath === '/*' ? 'unmatched' : c.req.routePath
  countResponse(route, c.res.status)
  c.executionCtx.waitUntil(sendSoon(c.env, c.get('config').telemetry.batchMs))
})
