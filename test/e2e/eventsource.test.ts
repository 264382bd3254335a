// Stream sessions in real headless Chromium with its native EventSource, against the built bundle
// in workerd and a vLLM emulator process. Between the browser and the Worker sits a small HTTP
// proxy that can cut the browser's event stream connections mid-stream, as a dropped mobile
// connection would, and that counts every request EventSource makes (reconnects included).
import { createHmac } from 'node:crypto'
import { createServer, request as forward, type ClientRequest, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildPrivateWorker,
  serveWorker,
  spawnEmulator,
  reasoningBackendArgs,
  type RunningEmulator,
  type ServedWorker,
} from '../../scripts/stack.ts'
import { launchChromium, type RunningBrowser } from '../support/browser.ts'
import type { Page } from 'playwright-core'
import { referenceAnswer as emulatorAnswer, type ReferenceAnswer } from '../support/reference-answer.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'e2e-eventsource-backend-key'
const CLIENT_KEY = `sk-${'b'.repeat(43)}`
const URL_SECRET = 'e2e-stream-url-secret'
const RETRY_MS = 300

interface SeenEvent {
  id: number
  name: string
  data: { text?: string; finish_reason?: string; error?: { code: string } }
  /** Which connection (1 = the first) delivered it. */
  connection: number
  at: number
}

interface PageStream {
  events: SeenEvent[]
  opens: number
  nativeErrors: number
  ended: boolean
}

/** Runs in the page: one EventSource per name, every event and connection error recorded. */
const COLLECTOR = `window.streams = {}; window.sources = {};
window.collect = function (name, url, closeOnEnd) {
  var state = { events: [], opens: 0, nativeErrors: 0, ended: false };
  var source = new EventSource(url);
  source.onopen = function () { state.opens++; };
  ['reasoning', 'content', 'usage', 'done', 'error'].forEach(function (kind) {
    source.addEventListener(kind, function (event) {
      if (typeof event.data !== 'string') { state.nativeErrors++; return; }
      state.events.push({ id: Number(event.lastEventId), name: kind, data: JSON.parse(event.data), connection: state.opens, at: performance.now() });
      if (kind === 'done' || kind === 'error') { state.ended = true; if (closeOnEnd) source.close(); }
    });
  });
  window.streams[name] = state;
  window.sources[name] = source;
};`

interface CuttingProxy {
  url: string
  /** Every request, in order: its path and the Last-Event-ID it carried. */
  requests: { path: string; lastEventId: string | null; status: number }[]
  /** Destroys the browser side and the Worker side of every open event stream. */
  cutStreams(): number
  close(): Promise<void>
}

/** The proxy starts first (its origin goes into a key's allowed origins); its target comes later. */
function startProxy(target: () => string): Promise<CuttingProxy> {
  const open = new Set<{ client: ServerResponse; upstream: ClientRequest }>()
  const requests: CuttingProxy['requests'] = []
  const server = createServer((req, res) => {
    const entry = { path: req.url ?? '', lastEventId: (req.headers['last-event-id'] as string | undefined) ?? null, status: 0 }
    requests.push(entry)
    const upstreamUrl = new URL(target())
    const upstream = forward(
      { host: upstreamUrl.hostname, port: upstreamUrl.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        entry.status = answer.statusCode ?? 0
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        const pair = { client: res, upstream }
        if (String(answer.headers['content-type']).startsWith('text/event-stream')) open.add(pair)
        res.on('close', () => {
          open.delete(pair)
          upstream.destroy()
        })
        answer.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        cutStreams() {
          const count = open.size
          for (const { client, upstream } of open) {
            client.socket?.destroy()
            upstream.destroy()
          }
          open.clear()
          return count
        },
        close: () =>
          new Promise((done) => {
            server.closeAllConnections()
            server.close(() => done())
          }),
      })
    })
  })
}

let emulator: RunningEmulator
let worker: ServedWorker
let proxy: CuttingProxy
let chromium: RunningBrowser
let page: Page

beforeAll(async () => {
  const args = reasoningBackendArgs(MODEL, BACKEND_KEY, { ttftMs: 20, itlMs: 3 })
  const [script, started, browser, cutting] = await Promise.all([
    buildPrivateWorker(),
    spawnEmulator(args),
    launchChromium(),
    startProxy(() => worker.url),
  ])
  emulator = started
  chromium = browser
  proxy = cutting
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY, STREAM_TOKEN_SECRETS: URL_SECRET, STREAM_RETRY_MS: String(RETRY_MS) },
    // The page's origin (the proxy's) is another origin than the Worker's: the key allows it.
    { keys: [{ secret: CLIENT_KEY, fields: { scopes: ['chat'], origins: [proxy.url] } }] },
  )
  page = await chromium.browser.newPage()
  // Any page of the Worker's origin (through the proxy) will do: the streams are same-origin.
  await page.goto(`${proxy.url}/health`)
  await page.evaluate(COLLECTOR)
})

afterAll(async () => {
  await chromium?.close()
  await proxy?.close()
  await worker?.dispose()
  await emulator?.stop()
})

/** Creates a session from the server side and returns its event URL as the page reaches it. */
async function createStream(text: string): Promise<string> {
  const response = await fetch(`${proxy.url}/v1/streams`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: text }] }),
  })
  expect(response.status).toBe(201)
  const { url } = (await response.json()) as { url: string }
  const parsed = new URL(url)
  return `${proxy.url}${parsed.pathname}${parsed.search}`
}

/** The emulator's own answer to the same message (test/support/reference-answer.ts). */
function referenceAnswer(text: string): Promise<ReferenceAnswer> {
  return emulatorAnswer(emulator.url, BACKEND_KEY, MODEL, text)
}

async function streamState(name: string): Promise<PageStream> {
  return JSON.parse(await page.evaluate(`JSON.stringify(window.streams[${JSON.stringify(name)}])`)) as PageStream
}

async function readyState(name: string): Promise<number> {
  return (await page.evaluate(`window.sources[${JSON.stringify(name)}].readyState`)) as number
}

function textOf(events: SeenEvent[]): { reasoning: string; content: string } {
  const join = (kind: string) =>
    events
      .filter((event) => event.name === kind)
      .map((event) => event.data.text)
      .join('')
  return { reasoning: join('reasoning'), content: join('content') }
}

function expectEveryIdOnce(events: SeenEvent[]): void {
  expect(events.map((event) => event.id)).toEqual(events.map((_, index) => index + 1))
}

describe('native EventSource in Chromium', () => {
  it('receives every event in order, and the text is the backend output', async () => {
    const text = '[emulator itl_ms=5 reasoning_tokens=40 content_tokens=20] Tell me about rivers.'
    // Asked meanwhile: it takes as long as the stream.
    const reference = referenceAnswer(text)
    const url = await createStream(text)
    await page.evaluate(`collect('whole', ${JSON.stringify(url)}, true)`)
    await page.waitForFunction('window.streams.whole.ended', undefined, { timeout: 15_000 })
    const stream = await streamState('whole')
    expectEveryIdOnce(stream.events)
    expect(stream.events.map((event) => event.name)).toEqual([
      ...Array(40).fill('reasoning'),
      ...Array(20).fill('content'),
      'usage',
      'done',
    ])
    expect(textOf(stream.events)).toEqual(await reference)
    expect({ opens: stream.opens, nativeErrors: stream.nativeErrors }).toEqual({ opens: 1, nativeErrors: 0 })
  })

  it('reconnects by itself after the connection is cut mid-stream and loses or repeats no token', async () => {
    const text = '[emulator itl_ms=25 reasoning_tokens=80 content_tokens=30] Tell me about glaciers.'
    // Asked meanwhile: it takes as long as the stream (about 3 s).
    const reference = referenceAnswer(text)
    const url = await createStream(text)
    const path = new URL(url).pathname
    await page.evaluate(`collect('cut', ${JSON.stringify(url)}, true)`)
    await page.waitForFunction('window.streams.cut.events.length >= 15', undefined, { timeout: 10_000 })
    expect(proxy.cutStreams()).toBe(1)
    await page.waitForFunction('window.streams.cut.ended', undefined, { timeout: 20_000 })
    const stream = await streamState('cut')
    expectEveryIdOnce(stream.events)
    expect(stream.events.at(-1)?.name).toBe('done')
    expect(textOf(stream.events)).toEqual(await reference)
    expect(stream.opens).toBe(2)
    expect(stream.nativeErrors).toBe(1)
    // The reconnect said where it was, and the generation had gone on meanwhile: the events made
    // while the browser was away came at once, as a replay, before the live ones.
    const lastBeforeCut = Math.max(...stream.events.filter((event) => event.connection === 1).map((event) => event.id))
    const reconnect = proxy.requests.filter((request) => request.path.startsWith(path))
    expect(reconnect.map((request) => request.lastEventId)).toEqual([null, String(lastBeforeCut)])
    const second = stream.events.filter((event) => event.connection === 2)
    const replayed = second.filter((event) => event.at - (second[0] as SeenEvent).at < 10)
    expect(replayed.length).toBeGreaterThan(1)
    const away = Math.round((second[0] as SeenEvent).at - (stream.events[lastBeforeCut - 1] as SeenEvent).at)
    console.log(
      `cut after event ${lastBeforeCut}; back ${away} ms later; ${stream.events.length} events, ${replayed.length} replayed at once, none missing or repeated`,
    )
  })

  it('works cross-origin: a page on another origin creates the stream and reads it from the Worker', async () => {
    const text = '[emulator itl_ms=5 reasoning_tokens=10 content_tokens=10] Tell me about deltas.'
    const create = `fetch(${JSON.stringify(`${worker.url}/v1/streams`)}, { method: 'POST', headers: { authorization: 'Bearer ${CLIENT_KEY}', 'content-type': 'application/json' }, body: ${JSON.stringify(JSON.stringify({ messages: [{ role: 'user', content: text }] }))} }).then(function (r) { return r.json() }).then(function (b) { collect('cross', b.url, true); return b.url })`
    const url = (await page.evaluate(create)) as string
    expect(new URL(url).origin).toBe(worker.url)
    expect(new URL(page.url()).origin).not.toBe(worker.url)
    await page.waitForFunction('window.streams.cross.ended', undefined, { timeout: 10_000 })
    const stream = await streamState('cross')
    expectEveryIdOnce(stream.events)
    expect(stream.events.at(-1)?.name).toBe('done')
    expect(textOf(stream.events)).toEqual(await referenceAnswer(text))
  })

  it('gives one error and no reconnect for a tampered or an expired URL', async () => {
    const url = await createStream('[emulator itl_ms=2 reasoning_tokens=5 content_tokens=5] Hi')
    const parsed = new URL(url)
    const sig = parsed.searchParams.get('sig') as string
    parsed.searchParams.set('sig', `${sig.at(0) === 'A' ? 'B' : 'A'}${sig.slice(1)}`)
    const tampered = parsed.toString()
    const id = parsed.pathname.split('/')[3] as string
    // Signed as docs/streams.md says, with the deployment's secret, but already expired.
    const exp = Math.floor(Date.now() / 1000) - 5
    const expiredSig = createHmac('sha256', URL_SECRET).update(`stream-url.v1\n${id}\n${exp}`).digest('base64url')
    const expired = `${proxy.url}/v1/streams/${id}/events?exp=${exp}&sig=${expiredSig}`
    await page.evaluate(`collect('tampered', ${JSON.stringify(tampered)}, false); collect('expired', ${JSON.stringify(expired)}, false)`)
    // Each gets its error event. An EventSource that is to reconnect is CONNECTING (0) then, one that
    // failed for good CLOSED (2), which it stays: it never opens again, so no waiting out
    // Chromium's reconnection delay (3 s) is needed to know it will not be back.
    await page.waitForFunction('window.streams.tampered.nativeErrors > 0 && window.streams.expired.nativeErrors > 0', undefined, {
      timeout: 10_000,
    })
    for (const [name, address] of [
      ['tampered', tampered],
      ['expired', expired],
    ] as const) {
      const stream = await streamState(name)
      expect({ name, events: stream.events.length, opens: stream.opens, nativeErrors: stream.nativeErrors }).toEqual({
        name,
        events: 0,
        opens: 0,
        nativeErrors: 1,
      })
      expect(await readyState(name)).toBe(2)
      const seen = proxy.requests.filter((request) => address.endsWith(request.path))
      expect(seen.map((request) => request.status)).toEqual([401])
    }
  })

  it('stops a browser that did not close after done: its one reconnect gets 204, nothing repeats', async () => {
    const url = await createStream('[emulator itl_ms=2 reasoning_tokens=5 content_tokens=5] Hi again')
    const path = new URL(url).pathname
    await page.evaluate(`collect('open-ended', ${JSON.stringify(url)}, false)`)
    await page.waitForFunction('window.streams["open-ended"].ended', undefined, { timeout: 10_000 })
    // Its reconnect (after RETRY_MS) gets the 204, which closes it for good: its second error, and
    // CLOSED, in which it never opens again.
    await page.waitForFunction(
      'window.streams["open-ended"].nativeErrors >= 2 && window.sources["open-ended"].readyState === 2',
      undefined,
      { timeout: 10_000 },
    )
    const stream = await streamState('open-ended')
    expectEveryIdOnce(stream.events)
    expect(await readyState('open-ended')).toBe(2)
    // One error as the server closed after done (EventSource is reconnecting), one as the 204
    // closed it for good.
    expect(stream.nativeErrors).toBe(2)
    const requests = proxy.requests.filter((request) => request.path.startsWith(path))
    expect(requests.map((request) => request.status)).toEqual([200, 204])
    expect(requests[1]?.lastEventId).toBe(String(stream.events.at(-1)?.id))
  })
})
