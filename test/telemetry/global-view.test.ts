import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import { bucketKey, bucketStart, MINUTE_MS, type LatencyBucket } from '../../src/telemetry/buckets.ts'
import { clearGlobalTtftCache, loadGlobalTtft } from '../../src/telemetry/global-view.ts'
import { observe } from '../../src/telemetry/histogram.ts'
import { emptyStats } from '../../src/telemetry/stats.ts'

function bucket(start: number, samples: Record<string, number[]>): LatencyBucket {
  const backends: LatencyBucket['backends'] = {}
  for (const [id, values] of Object.entries(samples)) {
    const stats = emptyStats()
    for (const value of values) observe(stats.ttftBackend, value)
    stats.requests = values.length
    backends[id] = stats
  }
  return { start, resolution: 'minute', backends }
}

async function put(value: LatencyBucket): Promise<void> {
  await env.LATENCY.put(bucketKey(value.start, 'minute'), JSON.stringify(value))
}

afterEach(() => clearGlobalTtftCache(env.LATENCY))

describe('the router global latency view', () => {
  it('gives each backend its median first-token time over the last five minutes of every isolate', async () => {
    const now = Date.UTC(2030, 0, 1, 12, 0, 30)
    const minute = bucketStart(now, 'minute')
    await put(bucket(minute - 2 * MINUTE_MS, { 'view-a': [100, 100, 100], 'view-b': [30, 30, 30] }))
    await put(bucket(minute, { 'view-a': [100, 100, 500], 'view-b': [30, 30] }))
    // Older than the window: not counted.
    await put(bucket(minute - 6 * MINUTE_MS, { 'view-a': [5, 5, 5, 5, 5, 5, 5, 5, 5, 5] }))
    const view = await loadGlobalTtft(env.LATENCY, 10_000, { now })
    expect(view.get('view-a')).toBeGreaterThan(95)
    expect(view.get('view-a')).toBeLessThan(105)
    expect(view.get('view-b')).toBeGreaterThan(28)
    expect(view.get('view-b')).toBeLessThan(32)
  })

  it('leaves out a backend with too few samples to say anything', async () => {
    const now = Date.UTC(2030, 0, 2, 12, 0, 30)
    await put(bucket(bucketStart(now, 'minute'), { 'view-c': [50, 60] }))
    expect((await loadGlobalTtft(env.LATENCY, 10_000, { now })).has('view-c')).toBe(false)
  })
})
