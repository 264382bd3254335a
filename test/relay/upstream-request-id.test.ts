// The upstream request id is the gateway's own, new for every attempt. vLLM uses X-Request-Id as
// the engine's request id and refuses a second running request with the same one
// (`vllm/v1/engine/output_processor.py`), so a client's id never goes upstream.
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetUrls, prepareFleet, writeFleet } from '../support/fleet.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { chatBody, postChat, recordedRequests, type RecordedRequest } from '../support/worker.ts'

const HEX_ID = /^[0-9a-f]{32}$/
const CLIENT_ID = 'client-chosen-id-1'

let serial = 0
const marker = () => `rid-${Date.now().toString(36)}-${serial++}`

const withMarker = (entries: RecordedRequest[], mark: string) => entries.filter((entry) => JSON.stringify(entry.body).includes(mark))
const upstreamId = (entry: RecordedRequest | undefined) => entry?.headers['x-request-id']

afterEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
})

describe('the upstream request id', () => {
  it("gives two concurrent requests that share the client's X-Request-Id different upstream ids", async () => {
    const mark = marker()
    // Both still generating at the same time, so a shared id would collide on a real vLLM.
    const body = chatBody(`[emulator ttft_ms=150 itl_ms=2 reasoning_tokens=2 content_tokens=2] ${mark}`, { stream: true })
    const responses = await Promise.all([1, 2].map(() => postChat(body, { headers: { 'x-request-id': CLIENT_ID } })))
    for (const response of responses) {
      expect(response.status).toBe(200)
      // The client's id stays the gateway's correlation id.
      expect(response.headers.get('x-request-id')).toBe(CLIENT_ID)
      expect(await response.text()).toContain('data: [DONE]')
    }
    const sent = withMarker(await recordedRequests(), mark)
    expect(sent).toHaveLength(2)
    const ids = sent.map(upstreamId)
    for (const id of ids) expect(id).toMatch(HEX_ID)
    expect(ids[0]).not.toBe(ids[1])
    expect(ids).not.toContain(CLIENT_ID)
  })

  it('gives every failover attempt its own id', async () => {
    await prepareFleet({ 0: 'refuse:503' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    // The other tests' requests cached the isolate's fleet view (no record) for the default TTL.
    clearFleetCache(env.FLEET)
    const mark = marker()
    const init = {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_SECRET}`, 'x-request-id': CLIENT_ID },
      body: JSON.stringify(chatBody(`[emulator ttft_ms=5 itl_ms=1 reasoning_tokens=2 content_tokens=2] ${mark}`, { stream: true })),
    }
    const { response, settled } = await callIn(fleetEnv(), '/v1/chat/completions', init)
    expect(response.status).toBe(200)
    await response.text()
    await settled()
    const logs = await Promise.all(
      fleetUrls.slice(0, 2).map(async (url) => (await (await fetch(`${url}/emulator/requests`)).json()) as RecordedRequest[]),
    )
    const [refused, served] = logs.map((log) => withMarker(log, mark))
    expect(refused).toHaveLength(1)
    expect(served).toHaveLength(1)
    const ids = [upstreamId(refused?.[0]), upstreamId(served?.[0])]
    for (const id of ids) expect(id).toMatch(HEX_ID)
    expect(ids[0]).not.toBe(ids[1])
  })

  it("sends no upstream request with the client's id, with or without one", async () => {
    const mark = marker()
    await (await postChat(chatBody(`[emulator ttft_ms=5 reasoning_tokens=1 content_tokens=1] ${mark}`))).text()
    const [sent] = withMarker(await recordedRequests(), mark)
    expect(upstreamId(sent)).toMatch(HEX_ID)
  })
})
