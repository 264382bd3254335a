import type { MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'

const limiters = new Map<number, MiddlewareHandler<AppEnv>>()

/** Hono's bodyLimit with the deployment's MAX_BODY_BYTES (413 when over, streamed bodies too). */
export const limitBody: MiddlewareHandler<AppEnv> = async function limitBody(c, next) {
  const maxSize = c.get('config').maxBodyBytes
  let limiter = limiters.get(maxSize)
  if (!limiter) {
    limiter = bodyLimit({
      maxSize,
      onError: () => {
        throw new ApiError(413, `Request body too large: the limit is ${maxSize} bytes.`, { code: 'request_too_large' })
      },
    })
    limiters.set(maxSize, limiter)
  }
  return limiter(c, next)
}
