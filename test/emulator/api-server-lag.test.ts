// apiServerLagMs: vLLM's API server is one asyncio event loop (api_server.py under uvicorn); when it
// lags, every request is handled late, /health and /metrics included, but not the emulator's own
// /emulator/* controls (gpu-backend/emulator/api-loop.ts). Small delays; orderings and lower bounds.
import { describe, expect, it } from 'vitest'
import { frameReader } from '../support/sse.ts'
import { chatBody, emulatorFor, post, sleep } from './helpers.ts'

async function timed(url: string, init?: RequestInit): Promise<{ at: number; status: number }> {
  const response = await fetch(url, init)
  await response.arrayBuffer()
  return { at: performance.now(), status: response.status }
}

describe('a lagging API server (apiServerLagMs)', () => {
  it('answers every vLLM route late while the lag is on; a request that arrived then keeps its delay after it is off, and a later one waits behind it', async () => {
    const emulator = await emulatorFor()
    const lag = 250
    const on = await post(emulator, '/emulator/config', { apiServerLagMs: lag })
    expect(((await on.json()) as { apiServerLagMs: number }).apiServerLagMs).toBe(lag)
    const sentAt = performance.now()
    const during = Promise.all([
      timed(`${emulator.url}/health`),
      timed(`${emulator.url}/metrics`),
      timed(`${emulator.url}/v1/models`),
      timed(`${emulator.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(chatBody('', { stream: true, max_tokens: 2 })),
      }),
    ])
    // The emulator's controls answer at once.
    const stats = await timed(`${emulator.url}/emulator/stats`)
    expect(stats.at - sentAt).toBeLessThan(lag)
    await sleep(30) // all four have arrived
    // Switched off while those wait: they keep their delay, and a new /health, which asyncio handles
    // first in first out, is answered after them, not before (the loop's backlog goes first).
    await post(emulator, '/emulator/config', { apiServerLagMs: 0 })
    const after = await timed(`${emulator.url}/health`)
    const answered = await during
    expect(answered.map((r) => r.status)).toEqual([200, 200, 200, 200])
    for (const { at } of answered) expect(at - sentAt).toBeGreaterThanOrEqual(lag - 2)
    expect(after.at).toBeGreaterThanOrEqual(Math.min(...answered.map(({ at }) => at)))
    expect(after.status).toBe(200)
  })

  it('lets a stream that was already streaming go on while the lag is on', async () => {
    const emulator = await emulatorFor({ itlMs: 20 })
    const response = await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=4 content_tokens=4', { stream: true }))
    const reader = frameReader(response.body ?? new ReadableStream())
    expect(await reader.next()).toMatch(/^data: /) // the role chunk: streaming has begun
    await post(emulator, '/emulator/config', { apiServerLagMs: 400 })
    const order: string[] = []
    const health = timed(`${emulator.url}/health`).then(() => order.push('health'))
    while ((await reader.next()) !== null);
    order.push('stream end')
    await health
    // The rest of the stream (about 8 x 20 ms) is not held back by the lag; /health is.
    expect(order).toEqual(['stream end', 'health'])
  })
})
