import { describe, expect, it } from 'vitest'
import type { TelemetryBatch } from '../../src/telemetry/batch.ts'
import { MIN_KEY_WRITE_INTERVAL_MS, TelemetryAggregate, type AggregateStore } from '../../src/telemetry/aggregate.ts'
import { MINUTE_MS, bucketKey, mergeBuckets, type LatencyBucket } from '../../src/telemetry/buckets.ts'
import { latencyReport } from '../../src/telemetry/latency-report.ts'
import { renderPrometheus } from '../../src/telemetry/prometheus.ts'
import type { RequestRecord } from '../../src/telemetry/record.ts'
import type { ProxyTotals } from '../../src/telemetry/totals.ts'

const OPTIONS = { minuteTtlS: 7200, hourTtlS: 691_200 }
const T0 = Date.UTC(2026, 10, 22, 10, 0, 30)

function memoryStore(): AggregateStore & { data: Map<string, unknown> } {
  const data = new Map<string, unknown>()
  return {
    data,
    get: <T>(key: string) => structuredClone(data.get(key)) as T | undefined,
    put: (key, value) => void data.set(key, structuredClone(value)),
    delete: (key) => void data.delete(key),
    list: <T>(prefix: string) =>
      [...data].filter(([key]) => key.startsWith(prefix)).map(([key, value]) => [key, structuredClone(value)] as [string, T]),
  }
}

function record(endedAt: number, fields: Partial<RequestRecord> = {}): RequestRecord {
  return {
    endedAt,
    model: 'm',
    keyId: 'key_1',
    backend: 'b1',
    reason: 'done',
    outcome: 'ok',
    status: 200,
    attempts: 1,
    headersMs: 5,
    edgeWaitMs: 0,
    ttftBackendMs: 40,
    ttftClientMs: 42,
    totalMs: 200,
    completionTokens: 20,
    decodeTokensPerS: 100,
    hedged: false,
    hedgeWon: null,
    ...fields,
  }
}

/** A percentile from the log-bucketed histograms is within 5% of the exact value. */
function expectNear(value: number | null | undefined, exact: number): void {
  expect(Math.abs((value ?? Number.NaN) - exact) / exact).toBeLessThanOrEqual(0.05)
}

function batch(records: RequestRecord[], isolate = 'i1', streams = 0): TelemetryBatch {
  return { isolate, sentAt: 0, streamsInFlight: streams, records, responses: { '/v1/chat/completions 200': records.length }, counters: {} }
}

describe('telemetry aggregate', () => {
  // A CPU-bound simulation (40,000 batches): room for a busy machine, which is no failure of it.
  it('never hands out a KV key twice within a second, however often it is asked and fed', { timeout: 30_000 }, () => {
    const aggregate = new TelemetryAggregate(memoryStore(), OPTIONS)
    const lastWrite = new Map<string, number>()
    const kv = new Map<string, LatencyBucket>()
    let sent = 0
    // The shortest gap between two writes of one key (one assertion at the end: an expect per
    // write made this CPU-bound simulation slow enough to time out on a busy machine).
    let shortestGap = Number.POSITIVE_INFINITY
    // 20 isolates, each sending a batch every 50 ms for 100 simulated seconds; a flush every 10 ms.
    const until = T0 + 100_000
    for (let now = T0; now < until; now += 10) {
      if ((now - T0) % 50 === 0) {
        for (let i = 0; i < 20; i++) {
          aggregate.ingest(batch([record(now - 5, { backend: `b${i % 3}` })], `i${i}`), now)
          sent++
        }
      }
      for (const write of aggregate.takeDue(now)) {
        const previous = lastWrite.get(write.key)
        if (previous !== undefined) shortestGap = Math.min(shortestGap, now - previous)
        lastWrite.set(write.key, now)
        kv.set(write.key, structuredClone(write.value))
      }
    }
    expect(lastWrite.size).toBeGreaterThan(0)
    expect(shortestGap).toBeGreaterThanOrEqual(MIN_KEY_WRITE_INTERVAL_MS)
    // Everything ingested reaches KV once the last second's writes are due.
    const end = until + MIN_KEY_WRITE_INTERVAL_MS
    for (const write of aggregate.takeDue(end)) kv.set(write.key, structuredClone(write.value))
    const minutes = [...kv].filter(([key]) => key.startsWith('lat:m:')).map(([, bucket]) => bucket)
    const hours = [...kv].filter(([key]) => key.startsWith('lat:h:')).map(([, bucket]) => bucket)
    expect(mergeBuckets(minutes).overall.requests).toBe(sent)
    expect(mergeBuckets(hours).overall.requests).toBe(sent)
    expect(minutes).toHaveLength(3)
  })

  it('resumes after a restart with its buckets, its unwritten changes and its write times', () => {
    const store = memoryStore()
    const first = new TelemetryAggregate(store, OPTIONS)
    first.ingest(batch([record(T0)]), T0)
    expect(first.takeDue(T0).map((write) => write.key)).toEqual([bucketKey(T0, 'minute'), bucketKey(T0, 'hour')])
    first.ingest(batch([record(T0 + 100)]), T0 + 100)

    const restarted = new TelemetryAggregate(store, OPTIONS)
    // Written 200 ms ago: not again before the interval has passed, even after the restart.
    expect(restarted.takeDue(T0 + 200)).toEqual([])
    const due = restarted.takeDue(T0 + MIN_KEY_WRITE_INTERVAL_MS)
    expect(due).toHaveLength(2)
    expect(mergeBuckets(due.map((write) => write.value)).overall.requests).toBe(4)
    expect(restarted.totals.responses['/v1/chat/completions 200']).toBe(2)
  })

  it('puts each record in the minute and hour it ended in, by backend, refused ones apart', () => {
    const aggregate = new TelemetryAggregate(memoryStore(), OPTIONS)
    aggregate.ingest(
      batch([
        record(T0),
        record(T0 + MINUTE_MS, { backend: 'b2' }),
        record(T0, { backend: null, reason: 'refused', outcome: 'refused', ttftBackendMs: null, ttftClientMs: null }),
      ]),
      T0 + MINUTE_MS,
    )
    const due = aggregate.takeDue(T0 + MINUTE_MS)
    const byKey = Object.fromEntries(due.map((write) => [write.key, write.value]))
    expect(Object.keys(byKey).sort()).toEqual(['lat:h:2026-11-22T10', 'lat:m:2026-11-22T10:00', 'lat:m:2026-11-22T10:01'])
    expect(Object.keys(byKey['lat:m:2026-11-22T10:00']?.backends ?? {}).sort()).toEqual(['-', 'b1'])
    expect(byKey['lat:h:2026-11-22T10']?.backends['-']?.outcomes.refused).toBe(1)
    expect(due.find((write) => write.key.startsWith('lat:m'))?.ttlS).toBe(7200)
    expect(due.find((write) => write.key.startsWith('lat:h'))?.ttlS).toBe(691_200)
  })

  it('gives a failed write back, to be tried again', () => {
    const aggregate = new TelemetryAggregate(memoryStore(), OPTIONS)
    aggregate.ingest(batch([record(T0)]), T0)
    const due = aggregate.takeDue(T0)
    aggregate.failed(due)
    expect(aggregate.nextWriteAt(T0)).toBe(T0 + MIN_KEY_WRITE_INTERVAL_MS)
    expect(aggregate.takeDue(T0 + MIN_KEY_WRITE_INTERVAL_MS)).toHaveLength(2)
  })

  it('counts a record too late for its minute instead of overwriting what KV holds', () => {
    const aggregate = new TelemetryAggregate(memoryStore(), OPTIONS)
    aggregate.ingest(batch([record(T0 - 2 * 60 * MINUTE_MS)]), T0)
    expect(aggregate.lateRecords).toBe(1)
    expect(aggregate.takeDue(T0)).toEqual([])
  })

  it('adds up streams in flight over the isolates heard from in the last minute', () => {
    const aggregate = new TelemetryAggregate(memoryStore(), OPTIONS)
    aggregate.ingest(batch([], 'a', 3), T0)
    aggregate.ingest(batch([], 'b', 4), T0 + 30_000)
    aggregate.ingest(batch([], 'a', 1), T0 + 40_000)
    expect(aggregate.streamsInFlight(T0 + 50_000)).toEqual({ streams: 5, isolates: 2 })
    expect(aggregate.streamsInFlight(T0 + 95_000)).toEqual({ streams: 1, isolates: 1 })
  })

  it('keeps edge waits as their own distribution beside the TTFTs, over the requests that waited', () => {
    const aggregate = new TelemetryAggregate(memoryStore(), OPTIONS)
    aggregate.ingest(
      batch([
        record(T0, { edgeWaitMs: 200, ttftBackendMs: 40, ttftClientMs: 242 }),
        record(T0, { edgeWaitMs: 400, ttftBackendMs: 40, ttftClientMs: 442 }),
        record(T0),
        record(T0, { backend: null, reason: 'refused', outcome: 'refused', edgeWaitMs: 1500, ttftBackendMs: null, ttftClientMs: null }),
      ]),
      T0,
    )
    const minute = aggregate.takeDue(T0).find((write) => write.key.startsWith('lat:m:'))?.value as LatencyBucket
    const b1 = latencyReport([minute], '5m', T0, 'b1').backends.b1
    expect(b1?.edge_wait_ms.waited).toBe(2)
    expectNear(b1?.edge_wait_ms.p50, 200)
    expectNear(b1?.edge_wait_ms.p99, 400)
    // The backend's TTFT leaves the wait out; the client's has it.
    expectNear(b1?.ttft_ms.backend.p99, 40)
    expectNear(b1?.ttft_ms.client.p99, 442)
    const overall = latencyReport([minute], '5m', T0, null)
    expect(overall.overall.edge_wait_ms.waited).toBe(3)
    expectNear(overall.backends['-']?.edge_wait_ms.p50, 1500)
    // In the Prometheus totals: waits only, per backend, on the TTFT buckets.
    expect(aggregate.totals.edgeWait?.b1).toMatchObject({ count: 2, sumS: expect.closeTo(0.6, 9) })
    expect(aggregate.totals.edgeWait?.['-']?.count).toBe(1)
  })

  it('reads buckets and totals stored before the edge queue (no edge-wait fields) as no waits, and adds to them', () => {
    const store = memoryStore()
    new TelemetryAggregate(store, OPTIONS).ingest(batch([record(T0)]), T0)
    // Make it what an older version stored: no edgeWait histogram in the buckets, no edgeWait in the totals.
    for (const [key, value] of store.data) {
      if (key.startsWith('bucket:')) for (const stats of Object.values((value as LatencyBucket).backends)) delete stats.edgeWait
    }
    delete (store.data.get('totals') as ProxyTotals).edgeWait

    const restarted = new TelemetryAggregate(store, OPTIONS)
    const oldBuckets = restarted.takeDue(T0).map((write) => structuredClone(write.value))
    expect(oldBuckets).toHaveLength(2)
    expect(oldBuckets.every((bucket) => Object.values(bucket.backends).every((stats) => !('edgeWait' in stats)))).toBe(true)
    expect(latencyReport(oldBuckets, '5m', T0, null).overall.edge_wait_ms).toEqual({ p50: null, p90: null, p99: null, waited: 0 })
    const metrics = { totals: restarted.totals, streamsInFlight: 0, isolatesReporting: 0, lateRecords: 0 }
    expect(renderPrometheus(metrics)).toContain('# TYPE edge_proxy_edge_wait_seconds histogram')

    restarted.ingest(batch([record(T0 + 100, { edgeWaitMs: 300 })]), T0 + 100)
    const minute = restarted.takeDue(T0 + MIN_KEY_WRITE_INTERVAL_MS).find((write) => write.key.startsWith('lat:m:'))?.value as LatencyBucket
    expect(minute.backends.b1?.requests).toBe(2)
    expect(latencyReport([minute], '5m', T0, null).overall.edge_wait_ms.waited).toBe(1)
    // An old bucket merged with a new one: the old adds no waits.
    expect(mergeBuckets([...oldBuckets, minute]).overall.edgeWait).toEqual(minute.backends.b1?.edgeWait)
    expect(restarted.totals.edgeWait?.b1?.count).toBe(1)
    expect(renderPrometheus(metrics)).toContain('edge_proxy_edge_wait_seconds_count{backend="b1"} 1\n')
  })

  it('takes a record from an isolate older than the edge queue (no edgeWaitMs) as one that did not wait', () => {
    const aggregate = new TelemetryAggregate(memoryStore(), OPTIONS)
    const older = record(T0) as Partial<RequestRecord>
    delete older.edgeWaitMs
    aggregate.ingest(batch([older as RequestRecord]), T0)
    const minute = aggregate.takeDue(T0).find((write) => write.key.startsWith('lat:m:'))?.value as LatencyBucket
    expect(latencyReport([minute], '5m', T0, null).overall).toMatchObject({ requests: 1, edge_wait_ms: { waited: 0 } })
    expect(aggregate.totals.edgeWait).toEqual({})
  })
})
