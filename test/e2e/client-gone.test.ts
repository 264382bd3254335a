// A client that hangs up at any moment, before the first token included, must not keep a GPU
// busy or a rate-limit slot held. workerd tells a Worker that its client left only when the
// Worker next writes to the response (or, before the response exists, through request.signal),
// so this runs over real sockets: the built Worker served by workerd, one emulator process, and a
// raw HTTP client that destroys its socket.
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'gone-backend-key'
/** A key with one concurrent stream: a slot still held refuses the next request with 429. */
const ONE_SLOT_KEY = `sk-${'g'.repeat(43)}`
/** The bound docs/api.md states for noticing a gone client and stopping its backend request. */
const BOUND_MS = 2_000

let emulator: RunningEmulator
let worker: ServedWorker

beforeAll(async () => {
  // One sequence at a time, so a second request waits in the backend's queue with its 200 sent.
  const args = ['--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1', '--api-key', BACKEND_KEY, '--max-num-seqs', '1']
  const [script, started] = await Promise.all([buildPrivateWorker(), spawnEmulator(args)])
  emulator = started
  const limits = { requestsPerMinute: null, tokensPerMinute: null, concurrentStreams: 1, maxOutputTokens: null }
  // The default keep-alive (15 s): the bound must not depend on a short one.
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY },
    { keys: [{ secret: ONE_SLOT_KEY, fields: { limits } }] },
  )
})

afterAll(async () => {
  await worker?.dispose()
  await emulator?.stop()
})

interface Stats {
  aborted: number
  inFlight: number
  running: number
  waiting: number
}

async function stats(): Promise<Stats> {
  return (await (await fetch(`${emulator.url}/emulator/stats`)).json()) as Stats
}

/** Starts a streaming chat request over its own socket; `response` resolves with the headers. */
function startChat(text: string): { req: ClientRequest; response: Promise<IncomingMessage> } {
  const body = JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: text }] })
  const req = request(`${worker.url}/v1/chat/completions`, {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ONE_SLOT_KEY}`, 'content-length': Buffer.byteLength(body) },
  })
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve)
    req.on('error', (error) => (req.destroyed ? undefined : reject(error)))
  })
  req.end(body)
  return { req, response }
}

/** Waits until `done` holds, polling; returns how long it took. */
async function within(ms: number, done: () => Promise<boolean>): Promise<number> {
  const start = Date.now()
  while (!(await done())) {
    if (Date.now() - start > ms + 3_000) throw new Error(`not within ${ms + 3_000} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return Date.now() - start
}

/** The key's slot is free: a short request with the same key is admitted (not 429). */
async function slotFree(): Promise<boolean> {
  const response = await fetch(`${worker.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ONE_SLOT_KEY}` },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: '[emulator ttft_ms=1 itl_ms=0 reasoning_tokens=1 content_tokens=1]' }],
    }),
  })
  await response.text()
  return response.status === 200
}

async function waitForFirstData(response: IncomingMessage, events: number): Promise<void> {
  let seen = 0
  await new Promise<void>((resolve) => {
    response.on('data', (chunk: Buffer) => {
      seen += (chunk.toString().match(/^data: /gm) ?? []).length
      if (seen >= events) resolve()
    })
  })
}

describe('a client that hangs up', () => {
  it('before the response headers: the backend request is aborted and the slot freed within 2 s', async () => {
    const before = await stats()
    const { req } = startChat('[emulator fault=hang]')
    await within(5_000, async () => (await stats()).inFlight === before.inFlight + 1)
    req.destroy()
    const took = await within(BOUND_MS, async () => (await stats()).aborted === before.aborted + 1)
    expect(took).toBeLessThan(BOUND_MS)
    expect(await slotFree()).toBe(true)
  })

  it('while queued at the backend (its 200 sent, no token yet): aborted and the slot freed within 2 s', async () => {
    // A request of another client holds the only backend sequence for a while.
    const holder = fetch(`${emulator.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${BACKEND_KEY}` },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: '[emulator ttft_ms=6000 reasoning_tokens=1 content_tokens=1]' }],
      }),
    })
    await within(5_000, async () => (await stats()).running === 1)
    const before = await stats()
    const { req, response } = startChat('[emulator ttft_ms=1 itl_ms=1]')
    expect((await response).statusCode).toBe(200)
    await within(5_000, async () => (await stats()).waiting === 1)
    req.destroy()
    const took = await within(BOUND_MS, async () => (await stats()).aborted === before.aborted + 1)
    expect(took).toBeLessThan(BOUND_MS)
    expect((await stats()).waiting).toBe(0)
    await (await holder).text()
    expect(await slotFree()).toBe(true)
  })

  it('mid-stream, in a pause between tokens: aborted and the slot freed within 2 s', async () => {
    const before = await stats()
    const { req, response } = startChat('[emulator ttft_ms=5 itl_ms=5 reasoning_tokens=20 pause_after=3 pause_ms=8000]')
    await waitForFirstData(await response, 4)
    req.destroy()
    const took = await within(BOUND_MS, async () => (await stats()).aborted === before.aborted + 1)
    expect(took).toBeLessThan(BOUND_MS)
    expect(await slotFree()).toBe(true)
  })
})
