import type { MiddlewareHandler } from 'hono'
import type { AppEnv } from '../env.ts'

/**
 * Registered before auth and the body limit on the Messages API's paths: every error of these
 * requests, the ones raised before the route (a missing key, a body too large, an unknown path or
 * method under /v1/messages) included, renders in Anthropic's shape (renderError reads it).
 */
export const anthropicErrors: MiddlewareHandler<AppEnv> = async function anthropicErrors(c, next) {
  c.set('errorFormat', 'anthropic')
  await next()
}
