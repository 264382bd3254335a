import { cors } from 'hono/cors'

/** The response headers a page may read: ids, rate limits, budgets, the retry hints, the edge queue. */
const EXPOSED_HEADERS = [
  'x-request-id',
  'x-prompt-rules',
  'retry-after',
  'retry-after-ms',
  'x-should-retry',
  'x-edge-queue',
  ...['requests', 'tokens'].flatMap((limit) => ['limit', 'remaining', 'reset'].map((part) => `x-ratelimit-${part}-${limit}`)),
  ...['day', 'month'].flatMap((period) => ['limit', 'remaining', 'reset'].map((part) => `x-budget-${part}-${period}`)),
]

/**
 * CORS for the API. Preflights reflect any web origin: a preflight grants nothing by itself,
 * because which origins a key may be used from is only known once the request's key is, and the
 * auth middleware refuses a disallowed origin with 403. No credentials mode (keys travel in the
 * Authorization or x-api-key header, never cookies), so a reflected origin is never combined with
 * credentials. For the same reason the request headers a preflight asks for are reflected too (no
 * `allowHeaders` list): the SDKs send their own (`x-stainless-*` from openai, `anthropic-version`
 * and `x-api-key` from @anthropic-ai/sdk), and a fixed list would fail their preflights.
 */
export const apiCors = cors({
  origin: (origin) => (/^https?:\/\/[^/\s]+$/.test(origin) ? origin : null),
  allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
  exposeHeaders: EXPOSED_HEADERS,
  maxAge: 600,
})
