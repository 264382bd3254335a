import { env } from 'cloudflare:workers'
import { runInDurableObject } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { KEY_ID_PREFIX, KEY_PREFIX, type KeyRecord } from '../../src/auth/key-record.ts'
import { KeyLimiter } from '../../src/durable/key-limiter.ts'
import { randomSecret, seedKey } from '../support/keys.ts'
import { keyWithLimits, type LimitedKey } from '../support/limits.ts'
import { callWorker, chatBody, emulatorStats, postChat, resetEmulator } from '../support/worker.ts'

// Revocation through the key's limiter (docs/keys.md): POST /v1/keys/:id/revoke sets a flag that
// every request of the key meets at admission, so the key stops at once, whatever the isolate's
// cached key record (KEY_CACHE_TTL_MS) or KV's propagation say.

const short = '[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=2 content_tokens=2]'

let adminSecret: string | null = null
async function revoke(id: string): Promise<Response> {
  if (adminSecret === null) {
    adminSecret = randomSecret()
    await seedKey(env.KEYS, adminSecret, { scopes: ['admin'] })
  }
  return callWorker(`/v1/keys/${id}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${adminSecret}` } })
}

async function storedRecord(id: string): Promise<KeyRecord | null> {
  const hash = await env.KEYS.get(KEY_ID_PREFIX + id)
  return hash ? env.KEYS.get<KeyRecord>(KEY_PREFIX + hash, 'json') : null
}

interface ErrorBody {
  error: { message: string; code: string }
}

async function expectRevoked(key: LimitedKey, body: unknown): Promise<void> {
  const response = await postChat(body, { secret: key.secret })
  expect(response.status).toBe(401)
  expect(((await response.json()) as ErrorBody).error).toMatchObject({ code: 'invalid_api_key', message: 'This API key has been revoked.' })
}

describe('revoking a key through its limiter', () => {
  it('refuses the next request with the revoked-key 401, although this isolate still holds the key record as valid', async () => {
    const key = await keyWithLimits({ concurrentStreams: 8 })
    // Cached in this isolate now, and the limiter's answer left headroom: the next request speculates.
    expect((await postChat(chatBody(short), { secret: key.secret })).status).toBe(200)
    const revoked = await revoke(key.id)
    expect(revoked.status).toBe(200)
    expect(await revoked.json()).toMatchObject({ object: 'key.revocation', key_id: key.id, revoked: true, already_revoked: false })
    await resetEmulator()
    await expectRevoked(key, chatBody(`${short} streamed`, { stream: true }))
    await expectRevoked(key, chatBody(short))
    // A speculative call may have reached the backend; none ran to its end.
    expect((await emulatorStats()).completed).toBe(0)
    expect((await storedRecord(key.id))?.disabled).toBe(true)
  })

  it('answers already_revoked for a key revoked twice, 404 for an unknown key, and 403 to a key without the admin scope', async () => {
    const key = await keyWithLimits({})
    expect((await revoke(key.id)).status).toBe(200)
    expect(await (await revoke(key.id)).json()).toMatchObject({ already_revoked: true })
    const unknown = await revoke('key_00000000000000ff')
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as ErrorBody).error.code).toBe('key_not_found')
    const asChat = await callWorker(`/v1/keys/${key.id}/revoke`, { method: 'POST' })
    expect(asChat.status).toBe(403)
  })

  it('keeps the flag in storage: a limiter restarted on it still refuses the key', async () => {
    const key = await keyWithLimits({})
    expect((await revoke(key.id)).status).toBe(200)
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(key.id))
    const limits = { requestsPerMinute: 10, tokensPerMinute: 1_000, concurrentStreams: 5, concurrentStreamsPerIp: null }
    const decision = await runInDurableObject(limiter, (_instance: KeyLimiter, state) =>
      new KeyLimiter(state, env).admit({ leaseId: 'after-restart', reserveTokens: 10, limits, clientIp: null }),
    )
    expect(decision).toMatchObject({ admitted: false, revoked: true })
  })
})
