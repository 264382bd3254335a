import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { env } from 'cloudflare:workers'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { bucketKey, bucketStart, HOUR_MS } from '../../src/telemetry/buckets.ts'
import type { LatencyReport } from '../../src/telemetry/latency-report.ts'
import { clearFleet, writeFleet } from '../support/fleet.ts'
import { keyWithLimits } from '../support/limits.ts'
import { adminAuth, aggregator, flushLatency } from '../support/telemetry.ts'
import { callWorker, chatBody, emulatorUrl, postChat } from '../support/worker.ts'
import type { RequestRecord } from '../../src/telemetry/record.ts'
import { emptyStats } from '../../src/telemetry/stats.ts'

// The emulator under a backend id of this file's own: the aggregator keeps every file's requests
// (the worker project's files share one runtime), and these figures are this file's requests only.
const backendId = 'gpu-latency-report'

async function report(query: string): Promise<LatencyReport> {
  const response = await callWorker(`/v1/latency${query}`, { headers: await adminAuth() })
  expect(response.status).toBe(200)
  return (await response.json()) as LatencyReport
}

describe('GET /v1/latency', () => {
  beforeAll(async () => {
    await writeFleet([{ id: backendId, url: emulatorUrl, weight: 1, maxConcurrency: 64, region: null, state: 'active' }])
    clearFleetCache(env.FLEET)
    const key = await keyWithLimits({})
    for (let i = 0; i < 5; i++)
      await (await postChat(chatBody(`[emulator ttft_ms=30 itl_ms=1] ${i}`, { stream: true }), { secret: key.secret })).text()
    await (await postChat(chatBody('[emulator fault=error_after:2]', { stream: true }), { secret: key.secret })).text()
    await flushLatency()
  })
  afterAll(async () => {
    await clearFleet()
    clearFleetCache(env.FLEET)
  })

  it('reports per backend and overall: counts, first-token percentiles both ways, decode speed, rates', async () => {
    const body = await report('?window=5m')
    expect(body).toMatchObject({ object: 'latency.report', window: '5m' })
    const backend = body.backends[backendId]
    expect(backend?.requests).toBeGreaterThanOrEqual(6)
    expect(backend?.outcomes.upstream_error).toBeGreaterThanOrEqual(1)
    expect(backend?.error_rate).toBeGreaterThan(0)
    expect(backend?.ttft_ms.backend.p50).toBeGreaterThanOrEqual(25)
    expect(backend?.ttft_ms.client.p99).toBeGreaterThanOrEqual(backend?.ttft_ms.client.p50 as number)
    expect(backend?.decode_tokens_per_s.p50).toBeGreaterThan(0)
    expect(body.overall.requests).toBeGreaterThanOrEqual(backend?.requests as number)
  })

  it('keeps only the backend asked for, and reads the hour buckets for 24h', async () => {
    const only = await report(`?window=1h&backend=${encodeURIComponent(backendId)}`)
    expect(Object.keys(only.backends)).toEqual([backendId])
    expect(only.overall.requests).toBe(only.backends[backendId]?.requests)
    const day = await report('?window=24h')
    expect(day.backends[backendId]?.requests).toBeGreaterThanOrEqual(6)
  })

  it('reports the wait at the edge apart from the backend TTFT: its percentiles and how many waited', async () => {
    // Records as the edge queue leaves them, straight to the aggregator, under a backend of their own.
    const waited = 'gpu-latency-edge-wait'
    const record = (edgeWaitMs: number): RequestRecord => ({
      endedAt: Date.now(),
      model: 'm',
      keyId: null,
      backend: waited,
      reason: 'done',
      outcome: 'ok',
      status: 200,
      attempts: 1,
      headersMs: edgeWaitMs + 5,
      edgeWaitMs,
      ttftBackendMs: 40,
      ttftClientMs: edgeWaitMs + 42,
      totalMs: edgeWaitMs + 200,
      completionTokens: 10,
      decodeTokensPerS: 100,
      hedged: false,
      hedgeWon: null,
    })
    const records = [record(200), record(200), record(0)]
    await aggregator().ingest({ isolate: 'latency-test', sentAt: Date.now(), streamsInFlight: 0, records, responses: {}, counters: {} })
    await flushLatency()
    const summary = (await report(`?window=5m&backend=${waited}`)).backends[waited]
    expect(summary?.requests).toBe(3)
    expect(summary?.edge_wait_ms.waited).toBe(2)
    expect(Math.abs((summary?.edge_wait_ms.p50 ?? 0) - 200) / 200).toBeLessThanOrEqual(0.05)
    expect(summary?.ttft_ms.backend.p99).toBeLessThan(45)
    expect(summary?.ttft_ms.client.p99).toBeGreaterThan(230)
    // This file's emulator requests did not wait.
    expect((await report('?window=5m')).backends[backendId]?.edge_wait_ms).toEqual({ p50: null, p90: null, p99: null, waited: 0 })
  })

  it('reads a bucket written before the edge queue (no edge-wait histogram) as one without waits', async () => {
    const old = 'gpu-latency-old-bucket'
    const start = bucketStart(Date.now() - 23 * HOUR_MS, 'hour')
    const stats: Partial<ReturnType<typeof emptyStats>> = { ...emptyStats(), requests: 4 }
    delete stats.edgeWait
    const key = bucketKey(start, 'hour')
    await env.LATENCY.put(key, JSON.stringify({ start, resolution: 'hour', backends: { [old]: stats } }))
    try {
      const summary = (await report(`?window=24h&backend=${old}`)).backends[old]
      expect(summary?.requests).toBe(4)
      expect(summary?.edge_wait_ms).toEqual({ p50: null, p90: null, p99: null, waited: 0 })
    } finally {
      await env.LATENCY.delete(key)
    }
  })

  it('refuses an unknown window or a malformed backend id with a 400 naming the parameter', async () => {
    for (const [query, param] of [
      ['?window=7d', 'window'],
      ['?backend=%3Cscript%3E', 'backend'],
    ]) {
      const response = await callWorker(`/v1/latency${query}`, { headers: await adminAuth() })
      expect(response.status).toBe(400)
      expect(((await response.json()) as { error: { param: string } }).error.param).toBe(param)
    }
  })

  it('is for admin keys only', async () => {
    expect((await callWorker('/v1/latency')).status).toBe(403)
    expect((await callWorker('/v1/latency', { headers: { authorization: '' } })).status).toBe(401)
  })
})
