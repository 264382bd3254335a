import { createMiddleware } from 'hono/factory'
import type { GatewayConfig } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'

/** One of this Worker's configured public origins (PUBLIC_ORIGINS); the request's Host plays no part. */
export function isPublicOrigin(config: GatewayConfig, origin: string | undefined | null): origin is string {
  return typeof origin === 'string' && config.publicOrigins.has(origin)
}

/**
 * For state-changing requests a browser makes with cookies (dashboard sign-in and sign-out):
 * refuses, with 403, any request another site could have made. Browsers send `Origin` on every
 * POST (and `Sec-Fetch-Site` with it), so a cross-site form always shows itself: its `Origin` is
 * not one of PUBLIC_ORIGINS, or its `Sec-Fetch-Site` is not `same-origin`. Both are checked when
 * both are present, because `Sec-Fetch-Site` alone is relative to the name the browser used, which
 * a rebound DNS name controls. A request with neither header is not a browser's (curl, scripts)
 * and cannot carry a victim's cookies across sites, so it passes.
 */
export const sameOriginOnly = createMiddleware<AppEnv>(async function sameOriginOnly(c, next) {
  const origin = c.req.header('origin')
  const site = c.req.header('sec-fetch-site')
  if ((origin !== undefined && !isPublicOrigin(c.get('config'), origin)) || (site !== undefined && site !== 'same-origin')) {
    throw new ApiError(403, "This request must come from the dashboard's own pages.", { code: 'cross_site_request' })
  }
  await next()
})
