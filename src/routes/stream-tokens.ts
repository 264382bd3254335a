import type { Context } from 'hono'
import * as z from 'zod/mini'
import { DEFAULT_STREAM_TOKEN_TTL_S, MAX_STREAM_TOKEN_TTL_S, mintStreamToken } from '../auth/stream-token.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { isOriginAllowed } from '../middleware/auth.ts'
import { parseWith } from '../schema/parse.ts'
import { readJsonBody } from '../schema/read-json.ts'

const streamTokenRequest = z.object({
  ttl_seconds: z.optional(z.int().check(z.gte(1), z.lte(MAX_STREAM_TOKEN_TTL_S))),
  origin: z.optional(z.string().check(z.regex(/^https?:\/\/[^/\s]+$/, 'origin must look like https://app.example.com'))),
})

/** POST /v1/stream-tokens: a short-lived token a browser page can put in an EventSource URL. */
export async function createStreamToken(c: Context<AppEnv>): Promise<Response> {
  const { streamTokenSecrets } = c.get('config')
  const secret = streamTokenSecrets[0]
  if (!secret) {
    throw new ApiError(503, 'Stream tokens are not configured on this deployment (STREAM_TOKEN_SECRETS).', {
      code: 'stream_tokens_disabled',
    })
  }
  const body = c.req.header('content-length') === '0' ? {} : await readJsonBody(c)
  const request = parseWith(streamTokenRequest, body)
  const principal = c.get('principal')
  const origin = request.origin ?? null
  if (origin !== null && !isOriginAllowed(c, principal.record, origin)) {
    throw new ApiError(403, `The origin ${origin} is not allowed for this API key.`, { param: 'origin', code: 'origin_not_allowed' })
  }
  const expires = Math.floor(Date.now() / 1000) + (request.ttl_seconds ?? DEFAULT_STREAM_TOKEN_TTL_S)
  const token = await mintStreamToken(secret, { keyId: principal.keyId, expires, origin })
  return c.json({ object: 'stream_token', token, expires_at: expires, key_id: principal.keyId, origin })
}
