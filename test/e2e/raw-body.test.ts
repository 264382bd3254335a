// Request bodies that break off, stall or trickle, sent over raw sockets to the built Worker served
// by workerd (an HTTP client library would refuse to send most of them). Each gets an
// OpenAI-shaped 400 or 408 within the body deadlines, never a 500 or a connection held open.
import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const KEY = `sk-${'r'.repeat(43)}`
const IDLE_MS = 1_500
const TOTAL_MS = 3_000
/** Longest any exchange may take: the whole-body bound plus generous slack for a loaded machine. */
const EXCHANGE_BOUND_MS = TOTAL_MS + 8_000

let emulator: RunningEmulator
let worker: ServedWorker
/** What the Worker logged: Miniflare forwards its console to this process's console. */
const printed: string[] = []
type ConsoleMethod = 'log' | 'info' | 'warn' | 'error'
const METHODS: readonly ConsoleMethod[] = ['log', 'info', 'warn', 'error']
// Replaced, not spied on: vi.spyOn did not see Miniflare's lines (checked against the code before the fix).
const consoleTarget: Record<ConsoleMethod, (...args: unknown[]) => void> = console
const originals = new Map(METHODS.map((method) => [method, consoleTarget[method]]))

beforeAll(async () => {
  for (const method of METHODS) {
    consoleTarget[method] = (...args: unknown[]) => {
      printed.push(args.map(String).join(' '))
      originals.get(method)?.(...args)
    }
  }
  const [script, started] = await Promise.all([buildPrivateWorker(), spawnEmulator(['--served-model-name', MODEL])])
  emulator = started
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulator.url, BODY_IDLE_TIMEOUT_MS: String(IDLE_MS), BODY_TIMEOUT_MS: String(TOTAL_MS) },
    { keys: [{ secret: KEY }] },
  )
})

afterAll(async () => {
  for (const [method, original] of originals) consoleTarget[method] = original
  await worker?.dispose()
  await emulator?.stop()
})

interface RawResponse {
  status: number
  headers: string
  body: string
  /** From the first byte sent to the end of the response. */
  elapsedMs: number
}

interface Piece {
  data: string
  /** Wait this long before sending it. */
  delayMs?: number
}

function head(extra: string[]): string {
  const { host } = new URL(worker.url)
  return [
    'POST /v1/chat/completions HTTP/1.1',
    `Host: ${host}`,
    `Authorization: Bearer ${KEY}`,
    'Content-Type: application/json',
    ...extra,
    '',
    '',
  ].join('\r\n')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The response is complete once its Content-Length bytes (or a close) arrived. */
function complete(raw: string): boolean {
  const end = raw.indexOf('\r\n\r\n')
  if (end < 0) return false
  const length = /\r\ncontent-length: *(\d+)/i.exec(raw.slice(0, end))
  return length !== null && Buffer.byteLength(raw.slice(end + 4)) >= Number(length[1])
}

/**
 * Sends the pieces over one socket (each after its delay, stopping once a response came), then
 * half-closes it when `fin`, and reads the response. Bounded: the socket is destroyed after
 * EXCHANGE_BOUND_MS.
 */
async function exchange(pieces: Piece[], fin: boolean): Promise<RawResponse> {
  const { hostname, port } = new URL(worker.url)
  const socket: Socket = connect({ host: hostname, port: Number(port), allowHalfOpen: true })
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const started = Date.now()
  let raw = ''
  const done = new Promise<void>((resolve) => {
    socket.on('data', (data: Buffer) => {
      raw += data.toString('utf8')
      if (complete(raw)) resolve()
    })
    socket.on('close', () => resolve())
    socket.on('error', () => resolve())
  })
  const guard = setTimeout(() => socket.destroy(), EXCHANGE_BOUND_MS)
  let answered = false
  void done.then(() => (answered = true))
  for (const piece of pieces) {
    if (piece.delayMs) await sleep(piece.delayMs)
    if (answered || socket.destroyed) break
    socket.write(piece.data)
  }
  if (fin && !answered) socket.end()
  await done
  clearTimeout(guard)
  const elapsedMs = Date.now() - started
  socket.destroy()
  const end = raw.indexOf('\r\n\r\n')
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0)
  return { status, headers: raw.slice(0, end), body: raw.slice(end + 4), elapsedMs }
}

function errorOf(response: RawResponse): { message: string; type: string; param: unknown; code: string } {
  return (JSON.parse(response.body) as { error: { message: string; type: string; param: unknown; code: string } }).error
}

const body = JSON.stringify({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'Say hello.' }] })

describe('request bodies over raw sockets', () => {
  it('answers a complete body sent over a raw socket (the control case)', async () => {
    const response = await exchange([{ data: head([`Content-Length: ${Buffer.byteLength(body)}`]) + body }], false)
    expect(response.status).toBe(200)
  })

  it('answers a body shorter than its Content-Length, then FIN, with 400 incomplete_body', async () => {
    const response = await exchange([{ data: head(['Content-Length: 400']) + body.slice(0, 50) }], true)
    expect(response.status).toBe(400)
    expect(errorOf(response)).toMatchObject({ type: 'invalid_request_error', code: 'incomplete_body', param: null })
  })

  it('answers a chunked body whose last chunk never comes (FIN instead) with 400 incomplete_body', async () => {
    const first = body.slice(0, 20)
    const response = await exchange([{ data: head(['Transfer-Encoding: chunked']) + `${first.length.toString(16)}\r\n${first}\r\n` }], true)
    expect(response.status).toBe(400)
    expect(errorOf(response).code).toBe('incomplete_body')
  })

  it('answers a chunked body with a chunk size that is not hex with a 400, never a 500', async () => {
    const response = await exchange([{ data: head(['Transfer-Encoding: chunked']) + `zz\r\n${body}\r\n0\r\n\r\n` }], true)
    // workerd does not refuse the framing itself: the Worker's body read fails, as for a cut body.
    expect(response.status).toBe(400)
    expect(errorOf(response).code).toBe('incomplete_body')
  })

  it('answers a body that stalls (no bytes for BODY_IDLE_TIMEOUT_MS) with 408 request_body_timeout', async () => {
    const response = await exchange([{ data: head(['Content-Length: 400']) + body.slice(0, 50) }], false)
    expect(response.status).toBe(408)
    expect(errorOf(response)).toMatchObject({ type: 'invalid_request_error', code: 'request_body_timeout' })
    expect(errorOf(response).message).toContain(`${IDLE_MS} ms`)
    // The rest of the body is never read: the connection cannot carry another request.
    expect(response.headers).toMatch(/\r\nconnection: close/i)
    // Not before the idle deadline, and well before the whole-body bound would have ended it.
    expect(response.elapsedMs).toBeGreaterThanOrEqual(IDLE_MS)
  })

  it('answers a body trickled at one byte per 200 ms past BODY_TIMEOUT_MS with 408 request_body_timeout', async () => {
    const trickle = Array.from({ length: 100 }, (_, i) => ({ data: body[i] ?? ' ', delayMs: 200 }))
    const response = await exchange([{ data: head([`Content-Length: ${Buffer.byteLength(body)}`]) }, ...trickle], false)
    expect(response.status).toBe(408)
    expect(errorOf(response).code).toBe('request_body_timeout')
    expect(errorOf(response).message).toContain(`${TOTAL_MS} ms`)
    expect(response.elapsedMs).toBeGreaterThanOrEqual(TOTAL_MS)
  })

  it('logged no unhandled_error for any of the bodies above (every one was an ApiError)', () => {
    // Checked against the code before the fix: its unhandled_error lines are caught here.
    expect(printed.join('\n')).not.toContain('unhandled_error')
  })
})
