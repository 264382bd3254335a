import { createMiddleware } from 'hono/factory'
import { readConfig } from '../config.ts'
import type { AppEnv } from '../env.ts'

/**
 * Puts the deployment's parsed configuration on the context (parsed once per isolate); a
 * misconfigured deployment answers 500 gateway_misconfigured naming the setting.
 *
 * @example
 * app.use(loadConfig)
 * app.get('/x', (c) => c.text(c.get('config').modelId))
 */
export const loadConfig = createMiddleware<AppEnv>(async function loadConfig(c, next) {
  c.set('config', readConfig(c.env))
  await next()
})
