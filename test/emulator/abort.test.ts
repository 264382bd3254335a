import { describe, expect, it } from 'vitest'
import { chatBody, emulatorFor, eventually, post, sleep } from './helpers.ts'
import { events, readUntil } from '../support/sse.ts'

describe('client aborts', () => {
  it('stops generating as soon as a streaming client goes away and counts the abort', async () => {
    const emulator = await emulatorFor({ ttftMs: 5, itlMs: 10 })
    const controller = new AbortController()
    const body = chatBody('reasoning_tokens=200 content_tokens=10', { stream: true })
    const response = await post(emulator, '/v1/chat/completions', body, { signal: controller.signal })
    const reader = response.body?.getReader()
    if (reader === undefined) throw new Error('no body')
    await readUntil(reader, (text) => events(text).length >= 4)
    controller.abort()
    const stats = await eventually(
      () => emulator.stats(),
      (s) => s.aborted === 1,
    )
    expect(stats).toMatchObject({ aborted: 1, completed: 0, inFlight: 0, streamsStarted: 1 })
    expect(stats.lastAbortAt).toBeGreaterThan(Date.now() - 5000)
    expect(stats.tokensGenerated).toBeGreaterThanOrEqual(3)
    expect(stats.tokensGenerated).toBeLessThan(50)
    await sleep(100) // ten more itl periods: a generator still running would add about ten tokens
    expect(emulator.stats().tokensGenerated).toBe(stats.tokensGenerated)
  })

  it('counts an abort of a request waiting for its non-streaming answer', async () => {
    const emulator = await emulatorFor({ ttftMs: 200 })
    const controller = new AbortController()
    const request = post(emulator, '/v1/chat/completions', chatBody(), { signal: controller.signal })
    await sleep(50)
    controller.abort()
    await expect(request).rejects.toThrow()
    const stats = await eventually(
      () => emulator.stats(),
      (s) => s.aborted === 1,
    )
    expect(stats).toMatchObject({ aborted: 1, completed: 0, inFlight: 0, tokensGenerated: 0 })
  })

  it('close() ends open streams at once instead of waiting for them', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/chat/completions', chatBody('fault=stall_after:1', { stream: true }))
    const reader = response.body?.getReader()
    if (reader === undefined) throw new Error('no body')
    await readUntil(reader, (text) => events(text).length >= 2)
    const startedAt = Date.now()
    await emulator.close()
    await reader.read().catch(() => null) // ends or fails; either way it must not hang
    expect(Date.now() - startedAt).toBeLessThan(1000)
  })
})
