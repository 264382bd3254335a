import { afterAll, describe, expect, it } from 'vitest'
import { TEST_SECRET } from '../support/keys.ts'
import { MODEL, emulatorUrl } from '../support/worker.ts'
import {
  createSession,
  endSessions,
  eventReader,
  openEvents,
  parseStream,
  postStream,
  readStream,
  textOf,
  type SessionEvent,
} from './helpers.ts'

// A session's events as EventSource reads them: named, numbered, in order, and resumable from any
// id, whether the generation is still running or over.

afterAll(endSessions)

const SHORT = '[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=6 content_tokens=4] Tell me about rivers.'
/** Long enough to act mid-stream: about 40 tokens, 15 ms apart. */
const SLOW = '[emulator ttft_ms=5 itl_ms=15 reasoning_tokens=30 content_tokens=10] Tell me about lakes.'

function expectNumberedFrom(events: SessionEvent[], first: number): void {
  expect(events.map((event) => event.id)).toEqual(events.map((_, index) => first + index))
}

/** The emulator's own answer to the same request (it is deterministic for the same request and seed). */
async function directAnswer(text: string): Promise<{ reasoning: string; content: string }> {
  const response = await fetch(`${emulatorUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer test-backend-key' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: text }] }),
  })
  const body = (await response.json()) as { choices: { message: { content: string; reasoning?: string; reasoning_content?: string } }[] }
  const message = body.choices[0]?.message
  // vLLM v0.20.2 (the emulator's default) names it `reasoning`, v0.11.0 `reasoning_content`.
  return { reasoning: message?.reasoning ?? message?.reasoning_content ?? '', content: message?.content ?? '' }
}

describe('a stream session', () => {
  it('is created with a signed event URL that expires', async () => {
    const session = await createSession(SHORT)
    expect(session.object).toBe('stream_session')
    expect(session.url).toMatch(
      new RegExp(`^http://gateway\\.test/v1/streams/${session.id}/events\\?exp=${session.expires_at}&sig=[A-Za-z0-9_-]{43}$`),
    )
    expect(session.expires_at - Date.now() / 1000).toBeGreaterThan(890)
  })

  it('sends retry first, then reasoning, content, usage and done, numbered from 1, with the backend text', async () => {
    const session = await createSession(SHORT)
    const response = await openEvents(session.url)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const text = await response.text()
    expect(text.startsWith('retry: 1000\n\n')).toBe(true)
    const { events } = parseStream(text)
    expectNumberedFrom(events, 1)
    const names = events.map((event) => event.event)
    expect(names).toEqual([...Array(6).fill('reasoning'), ...Array(4).fill('content'), 'usage', 'done'])
    expect(events.at(-2)?.data).toEqual({ prompt_tokens: expect.any(Number), completion_tokens: 12, total_tokens: expect.any(Number) })
    expect(events.at(-1)?.data).toEqual({ finish_reason: 'stop' })
    expect(textOf(events)).toEqual(await directAnswer(SHORT))
  })

  it('replays exactly the events after Last-Event-ID, then follows the live ones', async () => {
    const session = await createSession(SLOW)
    const first = eventReader(await openEvents(session.url))
    const seen: SessionEvent[] = []
    for (let i = 0; i < 5; i++) seen.push((await first.next()) as SessionEvent)
    await first.cancel()
    // The generation goes on meanwhile; the reconnect gets the gap at once and the rest live.
    await new Promise((resolve) => setTimeout(resolve, 100))
    const rest = await readStream(await openEvents(session.url, { lastEventId: 5 }))
    expectNumberedFrom(rest.events, 6)
    const all = [...seen, ...rest.events]
    expectNumberedFrom(all, 1)
    expect(all.at(-1)?.event).toBe('done')
    expect(textOf(all)).toEqual(await directAnswer(SLOW))
  })

  it('gives every connection the same events: a second tab, or a reconnect before the old one is gone', async () => {
    const session = await createSession(SLOW)
    const [one, two] = await Promise.all([openEvents(session.url), openEvents(session.url)])
    const [a, b] = await Promise.all([readStream(one), readStream(two)])
    expect(a.events.length).toBeGreaterThan(40)
    expect(b.events).toEqual(a.events)
  })

  it('replays a finished stream from any id, and answers 204 past its last event so EventSource stops', async () => {
    const session = await createSession(SHORT)
    const whole = await readStream(await openEvents(session.url))
    const last = whole.events.at(-1)?.id as number
    const tail = await readStream(await openEvents(session.url, { lastEventId: last - 3 }))
    expect(tail.events).toEqual(whole.events.slice(-3))
    const after = await openEvents(session.url, { lastEventId: last })
    expect(after.status).toBe(204)
    expect(await after.text()).toBe('')
    const again = await readStream(await openEvents(session.url))
    expect(again.events).toEqual(whole.events)
  })

  it('takes the resume point from last_event_id, for a page that opens a new EventSource', async () => {
    const session = await createSession(SHORT)
    const whole = await readStream(await openEvents(session.url))
    const tail = await readStream(await openEvents(`${session.url}&last_event_id=8`))
    expect(tail.events).toEqual(whole.events.slice(8))
  })

  it('refuses a Last-Event-ID that is not one of its ids with 400', async () => {
    const session = await createSession(SLOW)
    const malformed = await openEvents(session.url, { headers: { 'last-event-id': 'abc' } })
    expect(malformed.status).toBe(400)
    expect(await malformed.json()).toMatchObject({ error: { code: 'invalid_last_event_id' } })
    const beyond = await openEvents(session.url, { lastEventId: 10_000 })
    expect(beyond.status).toBe(400)
    await (await openEvents(session.url)).text()
  })

  it('sends keep-alive comments while the backend is silent', async () => {
    const session = await createSession('[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=4 content_tokens=2 pause_after=2 pause_ms=300] Hi', {
      env: { KEEPALIVE_INTERVAL_MS: '50' },
    })
    const parsed = await readStream(await openEvents(session.url))
    expect(parsed.comments.filter((comment) => comment === ': keep-alive').length).toBeGreaterThanOrEqual(3)
    expect(parsed.events.at(-1)?.event).toBe('done')
  })

  it('carries one choice: n other than 1 is refused with 400', async () => {
    const response = await postStream({ model: MODEL, n: 2, messages: [{ role: 'user', content: 'Hi' }] }, { secret: TEST_SECRET })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { param: 'n', code: 'invalid_value' } })
  })
})
