import { describe, expect, it } from 'vitest'
import type { TelemetryBatch } from '../../src/telemetry/batch.ts'
import { renderPrometheus } from '../../src/telemetry/prometheus.ts'
import type { RequestRecord } from '../../src/telemetry/record.ts'
import { addBatch, emptyTotals, type ProxyTotals } from '../../src/telemetry/totals.ts'

function record(fields: Partial<RequestRecord>): RequestRecord {
  return {
    endedAt: 0,
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

function render(totals: ProxyTotals): string {
  return renderPrometheus({ totals, streamsInFlight: 0, isolatesReporting: 0, lateRecords: 0 })
}

const lines = (text: string, prefix: string) => text.split('\n').filter((line) => line.startsWith(prefix))

describe('Prometheus exposition', () => {
  it('has an edge-wait histogram of the requests that waited only, on the first-token buckets, per backend', () => {
    const totals = emptyTotals()
    const batch: TelemetryBatch = {
      isolate: 'i1',
      sentAt: 0,
      streamsInFlight: 0,
      responses: {},
      counters: {},
      records: [
        record({ edgeWaitMs: 200, ttftBackendMs: 40, ttftClientMs: 242 }),
        record({}),
        record({ backend: null, reason: 'refused', outcome: 'refused', edgeWaitMs: 3000, ttftBackendMs: null, ttftClientMs: null }),
      ],
    }
    addBatch(totals, batch)
    const text = render(totals)
    expect(text).toContain('# TYPE edge_proxy_edge_wait_seconds histogram\n')
    expect(lines(text, 'edge_proxy_edge_wait_seconds_bucket{backend="b1"')).toEqual([
      ...['0.025', '0.05', '0.1'].map((le) => `edge_proxy_edge_wait_seconds_bucket{backend="b1",le="${le}"} 0`),
      ...['0.25', '0.5', '1', '2.5', '5', '10', '30', '+Inf'].map((le) => `edge_proxy_edge_wait_seconds_bucket{backend="b1",le="${le}"} 1`),
    ])
    expect(text).toContain('edge_proxy_edge_wait_seconds_sum{backend="b1"} 0.2\n')
    expect(text).toContain('edge_proxy_edge_wait_seconds_count{backend="b1"} 1\n')
    // Refused after waiting: counted under "-".
    expect(text).toContain('edge_proxy_edge_wait_seconds_count{backend="-"} 1\n')
    // The client's first-token histogram has both served requests, the wait included in the first.
    expect(text).toContain('edge_proxy_time_to_first_token_seconds_count{backend="b1"} 2\n')
    expect(text).toContain('edge_proxy_time_to_first_token_seconds_sum{backend="b1"} 0.284\n')
  })

  it('renders totals saved before the edge queue (no edgeWait): the histogram is declared, with no samples', () => {
    const totals = emptyTotals()
    delete totals.edgeWait
    addBatch(totals, { isolate: 'i1', sentAt: 0, streamsInFlight: 0, responses: {}, counters: {}, records: [record({})] })
    const text = render(totals)
    expect(text).toContain('# TYPE edge_proxy_edge_wait_seconds histogram\n')
    expect(lines(text, 'edge_proxy_edge_wait_seconds_')).toEqual([])
    expect(text).toContain('edge_proxy_time_to_first_token_seconds_count{backend="b1"} 1\n')
  })
})
