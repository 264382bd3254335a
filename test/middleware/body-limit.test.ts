import { describe, expect, it } from 'vitest'
import { readBody, type BodyLimits } from '../../src/middleware/body-limit.ts'
import { ApiError } from '../../src/errors.ts'

const limits: BodyLimits = { maxBytes: 64, idleMs: 100, totalMs: 300 }
const encoder = new TextEncoder()
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A body that sends `pieces`, each after its delay, then ends (or errors, or never ends). */
function bodyOf(pieces: { text: string; delayMs?: number }[], ending: 'close' | 'error' | 'stall' = 'close'): ReadableStream<Uint8Array> {
  let index = 0
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const piece = pieces[index++]
      if (piece) {
        if (piece.delayMs) await sleep(piece.delayMs)
        controller.enqueue(encoder.encode(piece.text))
        return
      }
      if (ending === 'close') controller.close()
      if (ending === 'error') controller.error(new TypeError('Network connection lost.'))
      // 'stall': no more pulls answered; the reader waits.
      if (ending === 'stall') await new Promise(() => {})
    },
  })
}

async function failureOf(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  )
  expect(error).toBeInstanceOf(ApiError)
  return error as ApiError
}

describe('readBody', () => {
  it('returns every byte of a body sent in pieces', async () => {
    const bytes = await readBody(bodyOf([{ text: '{"a":' }, { text: '1}', delayMs: 10 }]), limits)
    expect(new TextDecoder().decode(bytes)).toBe('{"a":1}')
  })

  it('refuses a streamed body that grows past the limit with 413, without a Content-Length to go by', async () => {
    const error = await failureOf(readBody(bodyOf([{ text: 'x'.repeat(40) }, { text: 'x'.repeat(40) }]), limits))
    expect(error).toMatchObject({ status: 413, code: 'request_too_large' })
  })

  it('answers a body whose read fails part-way with 400 incomplete_body, saying nothing of the runtime error', async () => {
    const error = await failureOf(readBody(bodyOf([{ text: '{"a":' }], 'error'), limits))
    expect(error).toMatchObject({ status: 400, code: 'incomplete_body' })
    expect(error.message).not.toContain('Network')
  })

  it('answers a body that stops sending with 408 after the idle deadline', async () => {
    const error = await failureOf(readBody(bodyOf([{ text: '{"a":' }], 'stall'), { ...limits, totalMs: 60_000 }))
    expect(error).toMatchObject({ status: 408, code: 'request_body_timeout', message: 'The request body stalled: no bytes for 100 ms.' })
  })

  it('answers a body that keeps trickling past the whole-body deadline with 408, though no gap reached the idle one', async () => {
    const trickle = Array.from({ length: 60 }, () => ({ text: ' ', delayMs: 20 }))
    const error = await failureOf(readBody(bodyOf(trickle), { maxBytes: 1_000, idleMs: 5_000, totalMs: 300 }))
    expect(error).toMatchObject({ status: 408, message: 'The request body was not complete within 300 ms.' })
  })
})
