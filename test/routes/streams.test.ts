import { exports } from 'cloudflare:workers'
import { afterAll, describe, expect, it } from 'vitest'
import { MATH_DIRECTIVE } from '../../src/normalize/index.ts'
import { MODEL, callWorker, recordedRequests } from '../support/worker.ts'
import { createSession, endSessions, openEvents, postStream, readStream } from '../streams/helpers.ts'

// POST /v1/streams takes the same chat request as /v1/chat/completions, checked and normalized by
// the same code; GET /playground is the page that uses it.

afterAll(endSessions)

describe('POST /v1/streams', () => {
  it('applies the DeepSeek-R1 prompt rules, names them, and always streams upstream with usage', async () => {
    const response = await postStream({
      model: 'deepseek-r1',
      stream: false,
      temperature: 1.2,
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'What is 12 * 7?' },
      ],
    })
    expect(response.status).toBe(201)
    expect(response.headers.get('x-prompt-rules')).toBe('fold_system,math_directive,temperature,top_p')
    await readStream(await openEvents(((await response.json()) as { url: string }).url))
    const sent = (await recordedRequests()).at(-1)?.body as Record<string, unknown>
    expect(sent).toMatchObject({
      model: MODEL,
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true },
      temperature: 0.7,
      top_p: 0.95,
      messages: [{ role: 'user', content: `You are terse.\n\nWhat is 12 * 7?\n${MATH_DIRECTIVE}` }],
    })
  })

  it('refuses what the chat route refuses, with the same errors, before any session exists', async () => {
    const invalid = await postStream({ model: MODEL, messages: [{ role: 'user', content: 42 }] })
    expect(invalid.status).toBe(400)
    expect(await invalid.json()).toMatchObject({ error: { param: 'messages[0].content', code: 'invalid_value' } })
    const unknownModel = await postStream({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Hi' }] })
    expect(unknownModel.status).toBe(404)
    expect(await unknownModel.json()).toMatchObject({ error: { code: 'model_not_found' } })
    const notJson = await callWorker('/v1/streams', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' })
    expect(notJson.status).toBe(415)
  })

  it('needs a key or a stream token, and never accepts a stream token as a Bearer key', async () => {
    const anonymous = await postStream('Hi', { secret: '' })
    expect(anonymous.status).toBe(401)
    const minted = (await (
      await callWorker('/v1/stream-tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    ).json()) as { token: string }
    const asBearer = await postStream('Hi', { headers: { authorization: `Bearer ${minted.token}` } })
    expect(asBearer.status).toBe(401)
    const inQuery = await postStream('[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=1 content_tokens=1] Hi', {
      secret: '',
      query: `?token=${minted.token}`,
    })
    expect(inQuery.status).toBe(201)
  })

  it('answers other methods with 405', async () => {
    expect((await callWorker('/v1/streams')).status).toBe(405)
    const session = await createSession('[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=1 content_tokens=1] Hi')
    const put = await exports.default.fetch(session.url, { method: 'PUT' })
    expect(put.status).toBe(405)
    expect(put.headers.get('allow')).toBe('GET')
  })
})

describe('GET /playground', () => {
  it('serves the page without a key, locked to its own script, style and API', async () => {
    const page = await exports.default.fetch('http://gateway.test/playground')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'")
    const html = await page.text()
    expect(html).toContain('<script src="/playground/app.js" defer></script>')
    expect(html).toContain('<details class="reasoning"')
  })

  it('serves its script and its style', async () => {
    const script = await exports.default.fetch('http://gateway.test/playground/app.js')
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    const source = await script.text()
    expect(source).toContain("fetch('/v1/streams'")
    expect(source).toContain('new EventSource(url)')
    // Model output is set as text, never parsed as markup.
    expect(source).not.toMatch(/innerHTML|insertAdjacentHTML|document\.write/)
    const style = await exports.default.fetch('http://gateway.test/playground/style.css')
    expect(style.headers.get('content-type')).toBe('text/css; charset=utf-8')
  })
})
