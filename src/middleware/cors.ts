import { cors } from 'hono/cors'

/**
 * CORS for the API. Preflights reflect any web origin: a preflight grants nothing by itself,
 * because which origins a key may be used from is only known once the request's key is, and the
 * auth middleware refuses a disallowed origin with 403. No credentials mode (keys travel in the
 * Authorization header, never cookies), so a reflected origin is never combined with credentials.
 */
export const apiCors = cors({
  origin: (origin) => (/^https?:\/\/[^/\s]+$/.test(origin) ? origin : null),
  allowMethods: ['GET', 'POST', 'OPTIONS'],
  allowHeaders: ['authorization', 'content-type'],
  exposeHeaders: ['x-request-id', 'x-prompt-rules', 'retry-after', 'x-edge-queue'],
  maxAge: 600,
})
