import type { RequestIdVariables } from 'hono/request-id'
import type { Principal } from './auth/principal.ts'
import type { WorkerEnv } from './bindings.ts'
import type { GatewayConfig } from './config.ts'
import type { ErrorFormat } from './errors.ts'

export type { Secrets, WorkerEnv } from './bindings.ts'

export type AppVariables = RequestIdVariables & {
  config: GatewayConfig
  /** Who is calling; set by the auth middleware. */
  principal: Principal
  /**
   * The error body's shape, set before auth for the routes of another API (the Anthropic Messages
   * API, src/messages/error-format.ts); unset: OpenAI's. renderError reads it.
   */
  errorFormat?: ErrorFormat
}

/** The one Hono environment of this app: `new Hono<AppEnv>()`, `Context<AppEnv>`. */
export interface AppEnv {
  Bindings: WorkerEnv
  Variables: AppVariables
}
