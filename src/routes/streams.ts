import type { Context } from 'hono'
import { signStreamUrl, verifyStreamUrl } from '../auth/stream-url.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { isPublicOrigin } from '../middleware/same-origin.ts'
import { prefixKeyOf } from '../fleet/select.ts'
import { admitLease, settleLease, type LeaseRef } from '../limits/admit.ts'
import { SSE_HEADERS } from '../relay/sse.ts'
import { parseLastEventId } from '../streams/events.ts'
import { fromRefusal } from '../streams/rpc.ts'
import { sessionSettings } from '../streams/settings.ts'
import { recordRequest, sendSoon } from '../telemetry/buffer.ts'
import { finishWithError } from '../telemetry/context.ts'
import { RequestTrace } from '../telemetry/trace.ts'
import { prepareChatRequest, upstreamBody } from '../chat/prepare.ts'
import { queuePlaceOf } from '../fleet/slots.ts'

// Browser stream sessions (docs/streams.md): POST /v1/streams starts one and answers its signed
// event URL; GET that URL is the EventSource stream, resumable with Last-Event-ID; POST to
// .../cancel with the same query stops the generation. The session is a StreamSession Durable Object.

/**
 * POST /v1/streams: the chat request is checked, normalized and admitted exactly as on
 * /v1/chat/completions (always streamed), then handed to a new session, which owns the lease
 * from then on. Answers once a backend accepted the request, or with why none did.
 */
export async function createStream(c: Context<AppEnv>): Promise<Response> {
  const startedAt = Date.now()
  const config = c.get('config')
  const secret = config.streamTokenSecrets[0]
  if (!secret) throw sessionsDisabled()
  let lease: LeaseRef | null = null
  let handedOver = false
  try {
    const { request, reserveTokens, gatewayMaxTokens } = await prepareChatRequest(c, { forceStream: true })
    if ((request.n ?? 1) !== 1)
      throw new ApiError(400, 'A stream session carries one choice: n must be 1.', { param: 'n', code: 'invalid_value' })
    lease = await admitLease(c, reserveTokens)
    const principal = c.get('principal')
    const origin = c.req.header('origin')
    const id = c.env.STREAMS.newUniqueId()
    const started = await c.env.STREAMS.get(id).start({
      keyId: principal.keyId,
      place: queuePlaceOf(principal.keyId, principal.record),
      lease,
      body: upstreamBody(request, config.modelId),
      prefixKey: prefixKeyOf(request.messages),
      gatewayMaxTokens,
      requestId: c.get('requestId'),
      startedAt,
      // A page gets a stream for its own origin; a server creating one for a page, the key's origins.
      origins: origin ? [origin] : [...principal.record.origins, ...config.allowedOrigins],
      settings: sessionSettings(config),
    })
    // From here the session has settled the lease and recorded the request, whatever it answered.
    handedOver = true
    if (!started.ok) throw fromRefusal(started.refusal)
    const expires = Math.floor(Date.now() / 1000) + config.streams.urlTtlS
    const { url } = await signStreamUrl(new URL(c.req.url).origin, id.toString(), expires, secret)
    return c.json({ object: 'stream_session', id: id.toString(), url, expires_at: expires }, 201)
  } catch (error) {
    if (!handedOver) {
      // A lease settled twice is settled once: harmless if the session did take it after all.
      if (lease) c.executionCtx.waitUntil(settleLease(c.env, lease, null).catch(() => false))
      recordRefusal(c, startedAt, error)
    }
    throw error
  }
}

/** GET /v1/streams/:id/events?exp&sig: the session's events after Last-Event-ID, then live. */
export async function streamEvents(c: Context<AppEnv>): Promise<Response> {
  const session = await sessionFromUrl(c)
  const lastEventId = parseLastEventId(c.req.header('last-event-id'), c.req.query('last_event_id'))
  if (lastEventId === null) throw new ApiError(400, 'Last-Event-ID must be an event id of this stream.', { code: 'invalid_last_event_id' })
  const origin = c.req.header('origin') ?? null
  // The Worker's own pages are its PUBLIC_ORIGINS, not the request's Host (a rebound DNS name sends its own).
  const selfOrigin = isPublicOrigin(c.get('config'), origin) ? origin : ''
  const result = await session.subscribe({ lastEventId, origin, selfOrigin })
  if (result.kind === 'refused') throw fromRefusal(result.refusal)
  // 204 is how a server tells EventSource to stop reconnecting: the stream is over.
  if (result.kind === 'ended') return c.body(null, 204)
  return c.body(result.body, 200, SSE_HEADERS)
}

/**
 * POST /v1/streams/:id/cancel?exp&sig (the event URL's signature): stops the generation now rather
 * than after the grace period. A POST without a body needs no CORS preflight.
 */
export async function cancelStream(c: Context<AppEnv>): Promise<Response> {
  const session = await sessionFromUrl(c)
  const cancelled = await session.cancel()
  return c.json({ object: 'stream_session', id: c.req.param('id'), cancelled })
}

async function sessionFromUrl(c: Context<AppEnv>) {
  const secrets = c.get('config').streamTokenSecrets
  if (secrets.length === 0) throw sessionsDisabled()
  const id = c.req.param('id') ?? ''
  await verifyStreamUrl(id, c.req.query('exp'), c.req.query('sig'), secrets, Math.floor(Date.now() / 1000))
  let objectId: DurableObjectId
  try {
    objectId = c.env.STREAMS.idFromString(id)
  } catch {
    throw new ApiError(404, 'No such stream.', { code: 'stream_not_found' })
  }
  return c.env.STREAMS.get(objectId)
}

function sessionsDisabled(): ApiError {
  return new ApiError(503, 'Stream sessions are not configured on this deployment (STREAM_TOKEN_SECRETS).', {
    code: 'stream_sessions_disabled',
  })
}

/** A request refused before a session took it is recorded here, as the chat route records its own. */
function recordRefusal(c: Context<AppEnv>, startedAt: number, error: unknown): void {
  const { modelId, telemetry } = c.get('config')
  const trace = new RequestTrace(
    { model: modelId, keyId: c.get('principal').keyId },
    (record) => {
      recordRequest(record)
      c.executionCtx.waitUntil(sendSoon(c.env, telemetry.batchMs))
    },
    startedAt,
  )
  finishWithError(trace, error)
}
