// A key's priority class on the way to vLLM (src/chat/prepare.ts priorityFor): sent as the
// request's `priority`, so a backend that schedules by priority (as the GPU containers do, and a
// fleet emulator here with --scheduling-policy priority) serves an interactive key's request before
// a batch key's that came first.
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import type { PriorityClass } from '../../src/auth/key-record.ts'
import { callIn, fleetEnv, fleetUrls } from '../support/fleet.ts'
import { randomSecret, seedKey } from '../support/keys.ts'
import { dataEvents, frames } from '../support/sse.ts'
import { chatBody, chatInit, fetchWithEnv, recordedRequests, resetEmulator } from '../support/worker.ts'

async function keyOf(priority: PriorityClass | undefined): Promise<string> {
  const secret = randomSecret()
  await seedKey(env.KEYS, secret, priority === undefined ? {} : { priority })
  return secret
}

function asKey(secret: string, body: unknown): RequestInit {
  const init = chatInit(body)
  return { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${secret}` } }
}

describe("a key's priority class", () => {
  it.each([
    ['interactive', -1],
    ['batch', 1],
  ] as const)('is sent to vLLM as priority for a %s key', async (priority, expected) => {
    await resetEmulator()
    const response = await fetchWithEnv({}, '/v1/chat/completions', asKey(await keyOf(priority), chatBody('hello')))
    expect(response.status).toBe(200)
    const [upstream] = (await recordedRequests()).filter((request) => request.path === '/v1/chat/completions')
    expect(upstream?.body?.priority).toBe(expected)
  })

  it("is vLLM's default for a standard key, or one whose record names none: no priority is sent", async () => {
    for (const priority of ['standard', undefined] as const) {
      await resetEmulator()
      const response = await fetchWithEnv({}, '/v1/chat/completions', asKey(await keyOf(priority), chatBody('hello')))
      expect(response.status).toBe(200)
      const [upstream] = (await recordedRequests()).filter((request) => request.path === '/v1/chat/completions')
      expect(upstream?.body).not.toHaveProperty('priority')
    }
  })

  it("refuses a client's own priority other than 0, naming the key's class as what sets it", async () => {
    const response = await fetchWithEnv({}, '/v1/chat/completions', asKey(await keyOf('batch'), chatBody('hello', { priority: -5 })))
    expect(response.status).toBe(400)
    const { error } = (await response.json()) as { error: { param: string; message: string } }
    expect(error.param).toBe('priority')
    expect(error.message).toContain("API key's priority class")
  })
})

describe('a full backend that schedules by priority', () => {
  const backend = fleetUrls[2]
  const configure = (config: Record<string, unknown>) =>
    fetch(`${backend}/emulator/config`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(config) })
  afterEach(async () => {
    await configure({ maxNumSeqs: null, schedulingPolicy: 'fcfs', fault: 'none' })
  })

  it("serves an interactive key's request before a batch key's that waited longer", async () => {
    expect((await configure({ maxNumSeqs: 1, schedulingPolicy: 'priority' })).status).toBe(200)
    const testEnv = fleetEnv({ BACKEND_URLS: backend })
    const [standard, batch, interactive] = await Promise.all([keyOf(undefined), keyOf('batch'), keyOf('interactive')])
    // The one slot, held until released: its first chunk says it is running.
    const holder = new AbortController()
    const held = await callIn(testEnv, '/v1/chat/completions', {
      ...asKey(standard, chatBody('[emulator fault=stall_after:1]', { stream: true })),
      signal: holder.signal,
    })
    const heldReader = held.response.body?.getReader()
    await heldReader?.read()
    const firstChunkAt = async (secret: string) => {
      const { response } = await callIn(
        testEnv,
        '/v1/chat/completions',
        asKey(secret, chatBody('[emulator content_tokens=2] hi', { stream: true })),
      )
      const text = await response.text()
      expect(dataEvents(frames(text)).length).toBeGreaterThan(0)
      return performance.now()
    }
    // The batch request is queued first, then the interactive one; both wait for the slot.
    const batchDone = firstChunkAt(batch)
    await waitForWaiting(backend, 1)
    const interactiveDone = firstChunkAt(interactive)
    await waitForWaiting(backend, 2)
    holder.abort()
    await heldReader?.cancel().catch(() => {})
    const [batchAt, interactiveAt] = await Promise.all([batchDone, interactiveDone])
    expect(interactiveAt).toBeLessThan(batchAt)
  })
})

async function waitForWaiting(url: string, waiting: number): Promise<void> {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    const stats = (await (await fetch(`${url}/emulator/stats`)).json()) as { waiting: number }
    if (stats.waiting === waiting) return
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`the backend never had ${waiting} waiting`)
}
