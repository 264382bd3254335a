import { HTTPException } from 'hono/http-exception'
import { describe, expect, it } from 'vitest'
import { Hono } from 'hono'
import type { AppEnv } from '../src/env.ts'
import { ApiError, anthropicErrorBody, anthropicErrorTypeFor, renderError, toApiError } from '../src/errors.ts'
import { fromRefusal, toRefusal } from '../src/streams/rpc.ts'

describe('the fallback for unknown errors', () => {
  it('keeps an ApiError as it is', () => {
    const error = new ApiError(404, 'No such stream.', { code: 'stream_not_found' })
    expect(toApiError(error)).toBe(error)
  })

  it.each([[new TypeError('secret prompt text')], ['a string'], [null]])(
    'turns %j into a 500 internal_error that quotes nothing',
    (thrown) => {
      const error = toApiError(thrown)
      expect(error).toMatchObject({ status: 500, type: 'server_error', code: 'internal_error' })
      expect(error.message).not.toContain('secret')
    },
  )

  it('keeps the status of a framework HTTP exception', () => {
    expect(toApiError(new HTTPException(413)).status).toBe(413)
  })

  it('gives a stream session refusal the same fallback as an HTTP response', () => {
    const refused = fromRefusal(toRefusal(new RangeError('boom')))
    const rendered = toApiError(new RangeError('boom'))
    expect({ status: refused.status, message: refused.message, code: refused.code }).toEqual({
      status: rendered.status,
      message: rendered.message,
      code: rendered.code,
    })
  })
})

describe("Anthropic's error shape (the Messages API)", () => {
  it.each([
    [400, 'invalid_request_error'],
    [401, 'authentication_error'],
    [403, 'permission_error'],
    [404, 'not_found_error'],
    [405, 'invalid_request_error'],
    [408, 'invalid_request_error'],
    [413, 'request_too_large'],
    [429, 'rate_limit_error'],
    [500, 'api_error'],
    [502, 'api_error'],
    [503, 'overloaded_error'],
    [504, 'api_error'],
  ])('names status %i %s', (status, type) => {
    expect(anthropicErrorTypeFor(status)).toBe(type)
  })

  it('is {type: "error", error: {type, message}}, with the request id when there is one', () => {
    const error = new ApiError(503, 'Every backend is busy.', { code: 'queue_full' })
    expect(anthropicErrorBody(error)).toEqual({ type: 'error', error: { type: 'overloaded_error', message: 'Every backend is busy.' } })
    expect(anthropicErrorBody(error, 'req-1').request_id).toBe('req-1')
  })

  it("is what the one renderer sends where the route set it, the status and headers unchanged; OpenAI's elsewhere", async () => {
    const app = new Hono<AppEnv>()
    app.onError(renderError)
    const refuse = () => {
      throw new ApiError(503, 'Every backend is busy.', { code: 'queue_full', headers: { 'retry-after': '3' } })
    }
    app.get('/anthropic', (c) => {
      c.set('errorFormat', 'anthropic')
      return refuse()
    })
    app.get('/openai', refuse)
    const anthropic = await app.request('/anthropic')
    expect(anthropic.status).toBe(503)
    expect(anthropic.headers.get('retry-after')).toBe('3')
    expect(await anthropic.json()).toEqual({ type: 'error', error: { type: 'overloaded_error', message: 'Every backend is busy.' } })
    const openai = await app.request('/openai')
    expect(openai.status).toBe(503)
    expect(openai.headers.get('retry-after')).toBe('3')
    expect(await openai.json()).toMatchObject({ error: { code: 'queue_full', type: 'server_error' } })
  })
})
