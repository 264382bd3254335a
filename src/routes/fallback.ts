import type { Context, Handler } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'

/** Registered after a route's own methods: any other method on that path is a 405. */
export function methodNotAllowed(...allowed: string[]): Handler<AppEnv> {
  const allow = allowed.join(', ')
  return function methodNotAllowed(c: Context<AppEnv>): never {
    throw new ApiError(405, `Method ${c.req.method} is not allowed on ${c.req.path}; use ${allow}.`, {
      code: 'method_not_allowed',
      headers: { allow },
    })
  }
}

export function notFound(c: Context<AppEnv>): never {
  throw new ApiError(404, `No route for ${c.req.method} ${c.req.path}.`, { code: 'unknown_route' })
}
