// A client that hangs up at any moment, before the first token or the backend's headers included,
// and on stream: false as on stream: true, must not keep a GPU busy or a rate-limit slot held.
// workerd tells a Worker that its client left only when the Worker writes to the response
// (request.signal does not fire for a request whose response does not exist yet), so the gateway
// commits the 200 within a second and probes; this runs over real sockets: the built Worker served
// by workerd, emulator processes, and a raw HTTP client that destroys its socket.
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'gone-backend-key'
/** Keys with one concurrent stream each: a slot still held refuses the next request with 429. */
const ONE_SLOT_KEY = `sk-${'g'.repeat(43)}`
const OTHER_ONE_SLOT_KEY = `sk-${'h'.repeat(43)}`
/** The bound docs/api.md states for noticing a gone client and stopping its backend request. */
const BOUND_MS = 2_000

/** vLLM's flags; one sequence at a time, so a second request waits in the backend's queue with its 200 sent. */
const EMULATOR_ARGS = ['--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1', '--api-key', BACKEND_KEY, '--max-num-seqs', '1']
const ONE_SLOT = { limits: { requestsPerMinute: null, tokensPerMinute: null, concurrentStreams: 1, maxOutputTokens: null } }
const KEYS = [ONE_SLOT_KEY, OTHER_ONE_SLOT_KEY].map((secret) => ({ secret, fields: ONE_SLOT }))
/** wrangler.toml's UPSTREAM_HEADERS_TIMEOUT_MS. */
const HEADERS_DEADLINE_MS = 3_000

let script: string
let emulator: RunningEmulator
let worker: ServedWorker

beforeAll(async () => {
  const [built, started] = await Promise.all([buildPrivateWorker(), spawnEmulator(EMULATOR_ARGS)])
  script = built
  emulator = started
  // The default keep-alive (15 s): the bound must not depend on a short one.
  worker = await serveWorker(script, { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY }, { keys: KEYS })
})

afterAll(async () => {
  await worker?.dispose()
  await emulator?.stop()
})

interface Stats {
  requests: number
  aborted: number
  inFlight: number
  running: number
  waiting: number
}

async function stats(of: RunningEmulator = emulator): Promise<Stats> {
  return (await (await fetch(`${of.url}/emulator/stats`)).json()) as Stats
}

/**
 * Starts a chat request (streaming unless told) over its own socket, accepting gzip as the SDKs do;
 * `response` resolves with the headers.
 */
function startChat(
  text: string,
  options: { stream?: boolean; url?: string; key?: string } = {},
): { req: ClientRequest; response: Promise<IncomingMessage> } {
  const body = JSON.stringify({ model: MODEL, stream: options.stream ?? true, messages: [{ role: 'user', content: text }] })
  const req = request(`${options.url ?? worker.url}/v1/chat/completions`, {
    method: 'POST',
    agent: false,
    headers: {
      'content-type': 'application/json',
      'accept-encoding': 'gzip, deflate, br',
      authorization: `Bearer ${options.key ?? ONE_SLOT_KEY}`,
      'content-length': Buffer.byteLength(body),
    },
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
async function slotFree(url = worker.url, key = ONE_SLOT_KEY): Promise<boolean> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
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
    // A request of another client holds the only backend sequence for a while (6 s to its first
    // token), until this test lets it go.
    const release = new AbortController()
    const holder = fetch(`${emulator.url}/v1/chat/completions`, {
      method: 'POST',
      signal: release.signal,
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
    // The holder goes too, so the sequence is free for the slot check without waiting out its 6 s.
    release.abort()
    await holder.then((response) => response.text()).catch(() => {})
    await within(5_000, async () => (await stats()).running === 0)
    expect(await slotFree()).toBe(true)
  })

  it('stream: false, before its 200 was committed: aborted and the slot freed within 2 s', async () => {
    const before = await stats()
    // About 8 s of generation: its answer is far from ready when the client leaves.
    const { req } = startChat('[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=400]', { stream: false })
    await within(5_000, async () => (await stats()).inFlight === before.inFlight + 1)
    req.destroy()
    const took = await within(BOUND_MS, async () => (await stats()).aborted === before.aborted + 1)
    expect(took).toBeLessThan(BOUND_MS)
    expect(await slotFree()).toBe(true)
  })

  it('stream: false, mid-generation after its 200 was committed: aborted and the slot freed within 2 s', async () => {
    const before = await stats()
    const { req, response } = startChat('[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=400]', { stream: false })
    const committed = await response
    expect(committed.statusCode).toBe(200)
    expect(committed.headers['content-type']).toBe('application/json')
    // Not compressed, though the client accepts gzip: a compressor would hold the probes back.
    expect(committed.headers['content-encoding']).toBe('identity')
    expect((await stats()).inFlight).toBe(before.inFlight + 1)
    req.destroy()
    const took = await within(BOUND_MS, async () => (await stats()).aborted === before.aborted + 1)
    expect(took).toBeLessThan(BOUND_MS)
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

describe('a client that hangs up before its backend sent the response headers, with another backend to fail over to', () => {
  let pair: RunningEmulator[] = []
  let fleet: ServedWorker

  beforeAll(async () => {
    pair = await Promise.all([spawnEmulator(EMULATOR_ARGS), spawnEmulator(EMULATOR_ARGS)])
    fleet = await serveWorker(script, { BACKEND_URLS: pair.map((e) => e.url).join(','), BACKEND_API_KEY: BACKEND_KEY }, { keys: KEYS })
  })

  afterAll(async () => {
    await fleet?.dispose()
    await Promise.all(pair.map((e) => e.stop()))
  })

  /** The pair's counters added up. */
  async function pairStats(): Promise<Stats> {
    const [a, b] = (await Promise.all(pair.map((e) => stats(e)))) as [Stats, Stats]
    return { requests: a.requests + b.requests, aborted: a.aborted + b.aborted, inFlight: a.inFlight + b.inFlight, running: 0, waiting: 0 }
  }

  it.each([true, false])(
    'stream: %s: before and after its 200: aborted within 2 s, and no other backend gets a request',
    async (stream) => {
      const before = await pairStats()
      const sentAt = Date.now()
      // Accepted, never answered, not even with headers: were the clients not noticed, the headers
      // deadline would fail each over to the other backend.
      const early = startChat('[emulator fault=hang]', { stream, url: fleet.url })
      const late = startChat('[emulator fault=hang]', { stream, url: fleet.url, key: OTHER_ONE_SLOT_KEY })
      await within(5_000, async () => (await pairStats()).inFlight === before.inFlight + 2)
      early.req.destroy()
      expect(await within(BOUND_MS, async () => (await pairStats()).aborted === before.aborted + 1)).toBeLessThan(BOUND_MS)
      // The other client has its 200 (committed within 1 s), waits a little more, then leaves.
      expect((await late.response).statusCode).toBe(200)
      await new Promise((resolve) => setTimeout(resolve, 400))
      late.req.destroy()
      expect(await within(BOUND_MS, async () => (await pairStats()).aborted === before.aborted + 2)).toBeLessThan(BOUND_MS)
      // Past the headers deadline and the time it may take to judge a miss: a failover would have asked a backend by now.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, sentAt + HEADERS_DEADLINE_MS + 2_000 - Date.now())))
      expect((await pairStats()).requests).toBe(before.requests + 2)
      expect(await slotFree(fleet.url)).toBe(true)
      expect(await slotFree(fleet.url, OTHER_ONE_SLOT_KEY)).toBe(true)
    },
  )
})
