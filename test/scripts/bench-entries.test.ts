// The benchmark-only entries, built as npm run bench builds them. The distance entry
// (bench/distance-worker.ts) adds latency to Durable Object and KV calls: it must never reach the
// production bundle, and it must still serve the real Worker. The bare entry relays with no key.
import { readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildPrivateWorker, buildWorker, serveWorker, spawnEmulator } from '../../scripts/stack.ts'

/** Strings only the distance entry has: its settings' names. */
const MARKERS = ['BENCH_DO_RTT_MS', 'BENCH_KV_RTT_MS', 'BENCH_BACKEND_RTT_MS']
const built: string[] = []

afterAll(async () => {
  await Promise.all(built.map((file) => rm(dirname(file), { recursive: true, force: true })))
})

describe('the benchmark distance entry', () => {
  it('is absent from the production bundle, present in its own, and serves the real Worker behind its delays', async () => {
    const production = await buildPrivateWorker()
    built.push(production)
    const distant = await buildWorker({ script: 'bench/distance-worker.ts', outdir: `distance-test-${process.pid}` })
    built.push(distant)
    const productionCode = readFileSync(production, 'utf8')
    for (const marker of MARKERS) {
      expect(productionCode).not.toContain(marker)
      expect(readFileSync(distant, 'utf8')).toContain(marker)
    }

    const emulator = await spawnEmulator(['--served-model-name', 'deepseek-r1-distill-qwen-1.5b', '--ttft-ms', '1', '--itl-ms', '1'])
    const secret = `sk-${'d'.repeat(43)}`
    const worker = await serveWorker(
      distant,
      { BACKEND_URLS: emulator.url, BENCH_DO_RTT_MS: '5', BENCH_KV_RTT_MS: '5' },
      { keys: [{ secret }] },
    )
    try {
      const response = await fetch(`${worker.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        body: JSON.stringify({ model: 'deepseek-r1-distill-qwen-1.5b', messages: [{ role: 'user', content: 'hi' }] }),
      })
      expect(response.status).toBe(200)
      // Admitted by the real limiter behind the delayed stub: its headers came back.
      expect(response.headers.get('x-ratelimit-limit-requests')).not.toBeNull()
      expect(await response.json()).toMatchObject({ object: 'chat.completion' })
    } finally {
      await worker.dispose()
      await emulator.stop()
    }
  })
})

describe('the benchmark bare entry', () => {
  it('builds with every Durable Object class wrangler.toml binds, and relays a chat completion with no key', async () => {
    // wrangler refuses a bundle that misses a bound class; npm run bench builds this entry.
    const bare = await buildWorker({ script: 'bench/bare-worker.ts', outdir: `bare-test-${process.pid}` })
    built.push(bare)
    const code = readFileSync(bare, 'utf8')
    for (const name of ['KeyLimiter', 'TelemetryAggregator', 'StreamSession', 'DashboardLink', 'BackendSlots']) expect(code).toContain(name)

    const emulator = await spawnEmulator(['--served-model-name', 'deepseek-r1-distill-qwen-1.5b', '--ttft-ms', '1', '--itl-ms', '1'])
    const worker = await serveWorker(bare, { BACKEND_URLS: emulator.url })
    try {
      const response = await fetch(`${worker.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'deepseek-r1-distill-qwen-1.5b', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      })
      expect(response.status).toBe(200)
      expect(await response.text()).toContain('data: [DONE]')
    } finally {
      await worker.dispose()
      await emulator.stop()
    }
  })
})
