// A deployment names no backend in BACKEND_URLS (wrangler.toml's [env.production]): until the fleet
// CLI registers one, chat and responses requests get a 503 that says how, and the Worker sends
// nothing anywhere, least of all to a loopback or private default.
import { env } from 'cloudflare:workers'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { FLEET_KEY, HEALTH_KEY } from '../../src/fleet/records.ts'
import { backendRecord, clearFleet, prepareFleet, writeFleet } from '../support/fleet.ts'
import { chatBody, chatInit, emulatorStats, fetchWithEnv, MODEL } from '../support/worker.ts'

const DEPLOYED = { BACKEND_URLS: '', FLEET_CACHE_TTL_MS: '1', FLEET_STALE_MAX_MS: '0' }
const HOW = 'No backends are registered: add one with `npm run fleet -- add <id> --url <url> --env production --remote` (docs/deploy.md).'

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  clearFleetCache(env.FLEET)
})
afterEach(async () => {
  await clearFleet()
  clearFleetCache(env.FLEET)
})

describe('no fleet record and an empty BACKEND_URLS', () => {
  it.each([
    ['/v1/chat/completions', chatBody('hello')],
    ['/v1/chat/completions', chatBody('hello', { stream: true })],
    ['/v1/responses', { model: MODEL, input: 'hello' }],
  ])('%s answers 503 no_backend_available, saying how to register a backend, and calls no backend', async (path, body) => {
    const before = (await emulatorStats()).requests
    const response = await fetchWithEnv(DEPLOYED, path, chatInit(body))
    expect(response.status).toBe(503)
    const { error } = (await response.json()) as { error: { message: string; code: string } }
    expect(error).toMatchObject({ code: 'no_backend_available', message: HOW })
    expect((await emulatorStats()).requests).toBe(before)
  })

  it('is a valid configuration: /health answers 200 with no backend', async () => {
    const response = await fetchWithEnv(DEPLOYED, '/health', {})
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ status: 'ok', backends: 0 })
  })

  it('an empty fleet record is no backend either', async () => {
    await env.FLEET.put(FLEET_KEY, JSON.stringify({ version: 1, updated: Date.now(), backends: [] }))
    const response = await fetchWithEnv(DEPLOYED, '/v1/chat/completions', chatInit(chatBody('hello')))
    expect(response.status).toBe(503)
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('no_backend_available')
  })

  it('routes to the backends the fleet record lists, once one is registered', async () => {
    // The fleet emulators are shared by the files: one may still have the fault an earlier file gave it.
    await prepareFleet()
    await writeFleet([backendRecord(0)])
    const response = await fetchWithEnv(
      DEPLOYED,
      '/v1/chat/completions',
      chatInit(chatBody('[emulator ttft_ms=1 itl_ms=1 content_tokens=2]')),
    )
    expect(response.status).toBe(200)
  })
})
