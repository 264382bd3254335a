import { env } from 'cloudflare:workers'
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { signStreamUrl } from '../../src/auth/stream-url.ts'
import { callWorker } from '../support/worker.ts'
import { createSession, endSessions, openEvents, postStream, readStream } from './helpers.ts'

// The event URL is the only credential an EventSource carries. A bad one gets a status EventSource
// does not retry (anything but 200 text/event-stream), with an OpenAI-shaped body.

afterAll(endSessions)

const SHORT = '[emulator ttft_ms=5 itl_ms=1 reasoning_tokens=3 content_tokens=2] Tell me about rivers.'
const SIGNING_SECRET = 'test-stream-secret-new'
const OLD_SECRET = 'test-stream-secret-old'

async function errorOf(response: Response): Promise<{ status: number; code: unknown; type: unknown }> {
  const body = (await response.json()) as { error: { code: unknown; type: unknown } }
  return { status: response.status, code: body.error.code, type: body.error.type }
}

function withParam(url: string, name: string, value: string): string {
  const parsed = new URL(url)
  parsed.searchParams.set(name, value)
  return parsed.toString()
}

describe('the signed event URL', () => {
  it('refuses a tampered signature, a changed expiry and a missing signature with 401', async () => {
    const { url, expires_at } = await createSession(SHORT)
    const sig = new URL(url).searchParams.get('sig') as string
    const flipped = `${sig.slice(0, -2)}${sig.at(-2) === 'A' ? 'B' : 'A'}${sig.at(-1)}`
    expect(await errorOf(await openEvents(withParam(url, 'sig', flipped)))).toEqual({
      status: 401,
      code: 'invalid_stream_url',
      type: 'authentication_error',
    })
    expect(await errorOf(await openEvents(withParam(url, 'exp', String(expires_at + 3600))))).toMatchObject({
      status: 401,
      code: 'invalid_stream_url',
    })
    const bare = new URL(url)
    bare.search = ''
    expect(await errorOf(await openEvents(bare.toString()))).toMatchObject({ status: 401, code: 'invalid_stream_url' })
  })

  it('refuses an expired URL with 401 expired_stream_url', async () => {
    const { id } = await createSession(SHORT)
    const { url } = await signStreamUrl('http://gateway.test', id, Math.floor(Date.now() / 1000) - 1, SIGNING_SECRET)
    expect(await errorOf(await openEvents(url))).toEqual({ status: 401, code: 'expired_stream_url', type: 'authentication_error' })
  })

  it('accepts a URL signed with the older secret during a rotation', async () => {
    const { id } = await createSession(SHORT)
    const { url } = await signStreamUrl('http://gateway.test', id, Math.floor(Date.now() / 1000) + 60, OLD_SECRET)
    const { events } = await readStream(await openEvents(url))
    expect(events.at(-1)?.event).toBe('done')
  })

  it('never takes a stream token signature as a URL signature', async () => {
    const { id } = await createSession(SHORT)
    const minted = (await (
      await callWorker('/v1/stream-tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    ).json()) as { token: string; expires_at: number }
    const [, , tokenSig] = minted.token.split('.')
    const url = `http://gateway.test/v1/streams/${id}/events?exp=${minted.expires_at}&sig=${tokenSig}`
    expect(await errorOf(await openEvents(url))).toMatchObject({ status: 401, code: 'invalid_stream_url' })
  })

  it('answers 404 for a signed id that is not a session id', async () => {
    const { url } = await signStreamUrl('http://gateway.test', 'not-a-session', Math.floor(Date.now() / 1000) + 60, SIGNING_SECRET)
    expect(await errorOf(await openEvents(url))).toMatchObject({ status: 404, code: 'stream_not_found' })
  })

  it('answers 503 without a stream token secret: nothing could be signed or checked', async () => {
    const response = await postStream(SHORT, { env: { STREAM_TOKEN_SECRETS: '' } })
    expect(await errorOf(response)).toMatchObject({ status: 503, code: 'stream_sessions_disabled' })
  })
})

describe('a finished session', () => {
  it('is replayed from storage by a new instance of its object', async () => {
    const session = await createSession(SHORT)
    const whole = await readStream(await openEvents(session.url))
    const stub = env.STREAMS.get(env.STREAMS.idFromString(session.id))
    await evictDurableObject(stub)
    const again = await readStream(await openEvents(session.url))
    expect(again.events).toEqual(whole.events)
  })

  it('is deleted when its replay window is over, and then answers 410 Gone', async () => {
    const session = await createSession(SHORT, { env: { STREAM_RETENTION_S: '1' } })
    await readStream(await openEvents(session.url))
    const stub = env.STREAMS.get(env.STREAMS.idFromString(session.id))
    const replay = await openEvents(session.url, { lastEventId: 1 })
    expect(replay.status).toBe(200)
    await replay.text()
    // The object's alarm deletes it one second after the end; none is left scheduled.
    await vi.waitFor(async () => expect((await openEvents(session.url)).status).toBe(410), { timeout: 3_000, interval: 100 })
    expect(await errorOf(await openEvents(session.url))).toMatchObject({ status: 410, code: 'stream_expired' })
    expect(await runDurableObjectAlarm(stub)).toBe(false)
    const keys = await runInDurableObject(stub, (_instance, state) => [...state.storage.kv.list()].length)
    expect(keys).toBe(0)
  })
})

describe('browser origins', () => {
  it('lets the page that created the stream read it cross-origin, and no other origin', async () => {
    const session = await createSession(SHORT, { headers: { origin: 'https://allowed.example' } })
    const own = await openEvents(session.url, { headers: { origin: 'https://allowed.example' } })
    expect(own.status).toBe(200)
    expect(own.headers.get('access-control-allow-origin')).toBe('https://allowed.example')
    await own.text()
    const other = await openEvents(session.url, { headers: { origin: 'https://evil.example' } })
    expect(await errorOf(other)).toMatchObject({ status: 403, code: 'origin_not_allowed' })
  })

  it('lets a stream a server created be read from the origins its key allows', async () => {
    const session = await createSession(SHORT)
    const allowed = await openEvents(session.url, { headers: { origin: 'https://allowed.example' } })
    expect(allowed.status).toBe(200)
    await allowed.text()
    expect((await openEvents(session.url, { headers: { origin: 'https://evil.example' } })).status).toBe(403)
  })

  it("lets the Worker's own origin (PUBLIC_ORIGINS) read it, and not a rebound name that only claims to be the Worker", async () => {
    const session = await createSession(SHORT)
    const own = await openEvents(session.url, { headers: { origin: 'http://gateway.test' } })
    expect(own.status).toBe(200)
    await own.text()
    const rebound = new URL(session.url)
    rebound.host = 'evil.example'
    const refused = await openEvents(rebound.toString(), { headers: { origin: 'http://evil.example' } })
    expect(await errorOf(refused)).toMatchObject({ status: 403, code: 'origin_not_allowed' })
  })
})
