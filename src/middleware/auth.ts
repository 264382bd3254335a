import type { Context, MiddlewareHandler } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import type { KeyRecord, Scope } from '../auth/key-record.ts'
import { requestBackground } from '../cache/request-background.ts'
import { findKeyById, findKeyBySecret, keyProblem } from '../auth/key-store.ts'
import { refuseIfRevoked } from '../auth/revocation.ts'
import type { Principal } from '../auth/principal.ts'
import { looksLikeStreamToken, verifyStreamToken } from '../auth/stream-token.ts'
import { isPublicOrigin } from './same-origin.ts'

export interface RequireKeyOptions {
  /** The scope the route needs; a key without it gets 403. */
  scope: Scope
  /** Browser streaming endpoints only: accept a stream token in the `token` query parameter. */
  acceptStreamToken?: boolean
  /** The Anthropic Messages API: accept the key in `x-api-key` too, as Anthropic's clients send it. */
  acceptXApiKey?: boolean
  /**
   * The route starts a generation, which its admission by the key's limiter refuses for a revoked
   * key anyway: the revocation check then runs beside the route rather than before it, so it adds
   * no Durable Object round trip to the time to first token. Only for such routes: any other
   * route's effects (a deletion, a revocation, a token) must wait for the check.
   */
  generation?: boolean
}

/**
 * Authenticates the caller with `Authorization: Bearer sk-...` (or, where allowed, `x-api-key:
 * sk-...` or a stream token in the query string), checks the key's scope and the browser origin, and sets `principal`.
 * Every refusal is OpenAI-shaped and never repeats what the caller sent.
 *
 * A key revoked through its limiter (POST /v1/keys/:id/revoke) is refused here, on every route and
 * whatever the body, whatever the isolate's cached record says (src/auth/revocation.ts): before
 * the route runs, or on a `generation` route beside it, where whatever the route answered (a 400
 * for a malformed body, a 403) is replaced by the revoked-key 401 before it is sent.
 */
export function requireKey(options: RequireKeyOptions): MiddlewareHandler<AppEnv> {
  const { scope, acceptStreamToken = false, acceptXApiKey = false, generation = false } = options
  return async function requireKey(c, next) {
    const token = c.req.query('token')
    const principal =
      acceptStreamToken && token !== undefined && !c.req.header('authorization')
        ? await fromStreamToken(c, token)
        : await fromApiKey(c, token !== undefined, acceptXApiKey)
    // A stream token's key too: a token minted before the revocation stops with its key.
    const revocation = refuseIfRevoked(c, principal.keyId)
    // Settled below; until then a rejection must not count as unhandled.
    revocation.catch(() => {})
    if (!generation) await revocation
    try {
      if (!principal.record.scopes.includes(scope)) {
        throw new ApiError(403, `This API key does not have the '${scope}' scope.`, { code: 'insufficient_scope' })
      }
      checkOrigin(c, principal.record)
      c.set('principal', principal)
      await next()
    } finally {
      await revocation.catch(async (revoked: unknown) => {
        // The route's answer goes unread: a stream's body is cancelled, so its upstream call ends.
        await c.res.body?.cancel().catch(() => {})
        throw revoked
      })
    }
  }
}

async function fromApiKey(c: Context<AppEnv>, sentToken: boolean, acceptXApiKey: boolean): Promise<Principal> {
  const secret = presentedSecret(c, sentToken, acceptXApiKey)
  if (looksLikeStreamToken(secret)) {
    throw invalidKey('Stream tokens are accepted only by the browser streaming endpoints; use an API key here.')
  }
  const config = c.get('config')
  const record = await findKeyBySecret(c.env.KEYS, secret, config.keyCacheTtlMs, requestBackground(c))
  if (!record) throw invalidKey(`Incorrect API key provided.${localKeyHint(c)}`)
  const problem = keyProblem(record)
  if (problem) throw invalidKey(`This API key has been ${problem === 'revoked' ? 'revoked' : 'expired'}.`)
  return { keyId: record.id, record, via: 'api_key' }
}

/**
 * The key the request presents: `Authorization: Bearer sk-...`, or, where accepted (the Messages
 * API), `x-api-key: sk-...` when no Authorization header is sent.
 */
function presentedSecret(c: Context<AppEnv>, sentToken: boolean, acceptXApiKey: boolean): string {
  const header = c.req.header('authorization')
  const apiKeyHeader = acceptXApiKey ? c.req.header('x-api-key') : undefined
  if (!header && apiKeyHeader !== undefined) {
    const secret = apiKeyHeader.trim()
    if (secret === '' || /\s/.test(secret)) throw invalidKey("Malformed x-api-key header: expected 'sk-...'.")
    return secret
  }
  if (!header) {
    const hint = sentToken ? ' Stream tokens are accepted only by the browser streaming endpoints.' : ''
    const how = acceptXApiKey ? "'x-api-key: sk-...' or 'Authorization: Bearer sk-...'" : "'Authorization: Bearer sk-...'"
    throw invalidKey(`Missing API key: send it as ${how}.${hint}${localKeyHint(c)}`)
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (!match?.[1]) throw invalidKey("Malformed Authorization header: expected 'Bearer sk-...'.")
  return match[1]
}

async function fromStreamToken(c: Context<AppEnv>, token: string): Promise<Principal> {
  const config = c.get('config')
  const claims = await verifyStreamToken(token, config.streamTokenSecrets, Math.floor(Date.now() / 1000))
  if (claims.origin !== null && c.req.header('origin') !== claims.origin) {
    throw new ApiError(401, 'This stream token is bound to another origin.', { code: 'invalid_stream_token' })
  }
  const record = await findKeyById(c.env.KEYS, claims.keyId, config.keyCacheTtlMs, requestBackground(c))
  const problem = record ? keyProblem(record) : null
  // Revoked: the same answer as the key itself gets, whether KV or the limiter's flag says so.
  if (problem === 'revoked') throw invalidKey('This API key has been revoked.')
  if (!record || problem) {
    throw new ApiError(401, 'The API key that minted this stream token is no longer valid.', { code: 'invalid_stream_token' })
  }
  return { keyId: record.id, record, via: 'stream_token' }
}

/**
 * A browser request (it has an Origin header) must come from an origin the key or the deployment
 * allows, or from this Worker's own pages. Programs (SDKs, curl) send no Origin and pass.
 */
function checkOrigin(c: Context<AppEnv>, record: KeyRecord): void {
  const origin = c.req.header('origin')
  if (!origin || isOriginAllowed(c, record, origin)) return
  throw new ApiError(403, `Requests from the origin ${origin} are not allowed for this API key.`, { code: 'origin_not_allowed' })
}

/** This Worker's own pages are its PUBLIC_ORIGINS, not whatever the request's Host names (DNS rebinding). */
export function isOriginAllowed(c: Context<AppEnv>, record: KeyRecord, origin: string): boolean {
  const config = c.get('config')
  return isPublicOrigin(config, origin) || config.allowedOrigins.has(origin) || record.origins.includes(origin)
}

/** Where `npm start` keeps its key (scripts/keys/dev-key.ts), said only in local development. */
export const LOCAL_KEY_HINT =
  "Under 'npm start' the local key is DEV_API_KEY in .dev.vars (printed at start as 'API key'); 'npm run keys -- create --name NAME' makes another."

function localKeyHint(c: Context<AppEnv>): string {
  return isLocalDevelopment(c) ? ` ${LOCAL_KEY_HINT}` : ''
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/

/**
 * Local development (wrangler dev, npm start): every one of the Worker's own origins
 * (PUBLIC_ORIGINS, wrangler.toml's default and npm start's) is on loopback, and so is the host the
 * request was sent to. A deployment fails the second even if its PUBLIC_ORIGINS was left at the
 * default, since Cloudflare routes a request by its public hostname.
 */
export function isLocalDevelopment(c: Context<AppEnv>): boolean {
  const origins = c.get('config').publicOrigins
  if (origins.size === 0) return false
  for (const origin of origins) if (!LOOPBACK_HOST.test(new URL(origin).hostname)) return false
  return LOOPBACK_HOST.test(new URL(c.req.url).hostname)
}

function invalidKey(message: string): ApiError {
  return new ApiError(401, message, { code: 'invalid_api_key' })
}
