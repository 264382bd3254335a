import { describe, expect, it } from 'vitest'
import { MODEL, callWorker as call, chatBody, postChat } from './support/worker.ts'

async function errorOf(response: Response) {
  return ((await response.json()) as { error: { message: string; type: string; param: string | null; code: string | null } }).error
}

describe('routes', () => {
  it('answers GET /health', async () => {
    const response = await call('/health')
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ status: 'ok', backends: 1 })
  })

  it('lists the one served model and retrieves it by id', async () => {
    const list = (await (await call('/v1/models')).json()) as { object: string; data: { id: string; object: string }[] }
    expect(list.object).toBe('list')
    expect(list.data.map((model) => model.id)).toEqual([MODEL])
    expect(await (await call(`/v1/models/${MODEL}`)).json()).toMatchObject({ id: MODEL, object: 'model' })
    const missing = await call('/v1/models/gpt-4')
    expect(missing.status).toBe(404)
    expect(await errorOf(missing)).toMatchObject({ code: 'model_not_found', param: 'model' })
  })

  it('answers an unknown route with an OpenAI-shaped 404', async () => {
    const response = await call('/v1/nothing-here')
    expect(response.status).toBe(404)
    expect(await errorOf(response)).toMatchObject({ type: 'not_found_error', code: 'unknown_route' })
  })

  it('answers a wrong method with 405 and an Allow header', async () => {
    const response = await call('/v1/chat/completions')
    expect(response.status).toBe(405)
    expect(response.headers.get('allow')).toBe('POST')
    expect(await errorOf(response)).toMatchObject({ type: 'invalid_request_error', code: 'method_not_allowed' })
    expect((await call('/v1/models', { method: 'DELETE' })).status).toBe(405)
  })
})

describe('chat request checks', () => {
  it('refuses a body that is not JSON with 400', async () => {
    const response = await call('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"messages": [',
    })
    expect(response.status).toBe(400)
    const error = await errorOf(response)
    expect(error.code).toBe('invalid_json')
    expect(error.message).not.toContain('messages')
  })

  it('refuses a non-JSON content type with 415', async () => {
    const response = await call('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' })
    expect(response.status).toBe(415)
  })

  it('refuses a body over 1 MiB with 413', async () => {
    const response = await postChat(chatBody('x'.repeat(1024 * 1024 + 1)))
    expect(response.status).toBe(413)
    expect(await errorOf(response)).toMatchObject({ type: 'invalid_request_error' })
  })

  it.each([
    [{ messages: [] }, 'messages'],
    [{ messages: [{ role: 'user' }] }, 'messages[0].content'],
    [{ messages: [{ role: 'robot', content: 'hi' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: 'hi' }], temperature: -1 }, 'temperature'],
    [{ messages: [{ role: 'user', content: 'hi' }], stream: 'yes' }, 'stream'],
    [{ messages: [{ role: 'user', content: 'hi' }], stream_options: { include_usage: true } }, 'stream_options'],
  ])('refuses an invalid request with 400 naming the field (%j)', async (body, param) => {
    const response = await postChat(body)
    expect(response.status).toBe(400)
    expect(await errorOf(response)).toMatchObject({ type: 'invalid_request_error', param })
  })

  it('refuses an unknown model with 404 model_not_found', async () => {
    const response = await postChat({ ...chatBody('hi'), model: 'gpt-4o' })
    expect(response.status).toBe(404)
    expect(await errorOf(response)).toMatchObject({ code: 'model_not_found', param: 'model' })
  })
})
