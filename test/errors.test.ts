import { HTTPException } from 'hono/http-exception'
import { describe, expect, it } from 'vitest'
import { ApiError, toApiError } from '../src/errors.ts'
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
