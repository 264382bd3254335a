// Stream sessions from the outside, inside workerd: create one through the Worker, open its event
// URL as EventSource would, and read the named, numbered events back.
import { exports } from 'cloudflare:workers'
import { TEST_SECRET } from '../support/keys.ts'
import { frameReader, frames } from '../support/sse.ts'
import { chatBody, fetchWithEnv } from '../support/worker.ts'

export interface Session {
  object: string
  id: string
  url: string
  expires_at: number
}

export interface SessionEvent {
  id: number
  event: string
  data: Record<string, unknown>
}

export interface CreateOptions {
  secret?: string
  headers?: Record<string, string>
  /** Settings changed for this request (they become the session's own, e.g. STREAM_GRACE_MS). */
  env?: Record<string, unknown>
  query?: string
}

/** Every session the helpers created, so that a file can end them all (`endSessions`). */
const created = new Set<string>()

/** POST /v1/streams with a chat body (the prompt's text, or a whole body). */
export async function postStream(body: string | Record<string, unknown>, options: CreateOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...options.headers }
  if (options.secret !== '') headers.authorization ??= `Bearer ${options.secret ?? TEST_SECRET}`
  const init = { method: 'POST', headers, body: JSON.stringify(typeof body === 'string' ? chatBody(body) : body) }
  const path = `/v1/streams${options.query ?? ''}`
  const response = await (options.env ? fetchWithEnv(options.env, path, init) : exports.default.fetch(`http://gateway.test${path}`, init))
  if (response.status === 201) created.add(((await response.clone().json()) as Session).url)
  return response
}

/**
 * Stops every session still generating and reads each to its end, so that none runs on, or
 * records its request late (a first token nobody took waits for a reader), into the next file.
 */
export async function endSessions(): Promise<void> {
  for (const url of created) {
    await exports.default.fetch(url.replace('/events?', '/cancel?'), { method: 'POST' })
    await (await openEvents(url)).text()
  }
  created.clear()
}

export async function createSession(body: string | Record<string, unknown>, options: CreateOptions = {}): Promise<Session> {
  const response = await postStream(body, options)
  if (response.status !== 201) throw new Error(`POST /v1/streams: ${response.status} ${await response.text()}`)
  return (await response.json()) as Session
}

/** GET the event URL as EventSource does, with the Last-Event-ID a reconnect would send. */
export function openEvents(
  url: string,
  init: { lastEventId?: number; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  const headers: Record<string, string> = { accept: 'text/event-stream', ...init.headers }
  if (init.lastEventId !== undefined) headers['last-event-id'] = String(init.lastEventId)
  return exports.default.fetch(url, { headers, signal: init.signal })
}

export interface ParsedStream {
  retry: number | null
  events: SessionEvent[]
  comments: string[]
}

/** Parses SSE text the way EventSource does for our frames (one line per field). */
export function parseStream(text: string): ParsedStream {
  const parsed: ParsedStream = { retry: null, events: [], comments: [] }
  for (const frame of frames(text)) {
    const fields = new Map<string, string>()
    for (const line of frame.split('\n')) {
      if (line.startsWith(':')) parsed.comments.push(line)
      const at = line.indexOf(': ')
      if (at > 0) fields.set(line.slice(0, at), line.slice(at + 2))
    }
    if (fields.has('retry')) parsed.retry = Number(fields.get('retry'))
    if (fields.has('event')) {
      parsed.events.push({
        id: Number(fields.get('id')),
        event: fields.get('event') as string,
        data: JSON.parse(fields.get('data') ?? 'null') as Record<string, unknown>,
      })
    }
  }
  return parsed
}

export async function readStream(response: Response): Promise<ParsedStream> {
  return parseStream(await response.text())
}

/** Reads events one at a time from an open stream, for tests that act mid-stream. */
export function eventReader(response: Response) {
  const reader = frameReader(response.body as ReadableStream<Uint8Array>)
  return {
    /** The next named event, skipping `retry:` and comments; null once the stream ended. */
    async next(): Promise<SessionEvent | null> {
      for (let frame = await reader.next(); frame !== null; frame = await reader.next()) {
        const [event] = parseStream(frame).events
        if (event) return event
      }
      return null
    },
    cancel: () => reader.cancel().catch(() => {}),
  }
}

/** The reasoning and answer text of a list of events. */
export function textOf(events: SessionEvent[]): { reasoning: string; content: string } {
  const join = (name: string) =>
    events
      .filter((e) => e.event === name)
      .map((e) => e.data.text as string)
      .join('')
  return { reasoning: join('reasoning'), content: join('content') }
}
