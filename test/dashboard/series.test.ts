import { describe, expect, it } from 'vitest'
import { dashboardSeries } from '../../src/dashboard/series.ts'
import { bucketStart, type LatencyBucket } from '../../src/telemetry/buckets.ts'
import type { Histogram } from '../../src/telemetry/histogram.ts'
import { observe } from '../../src/telemetry/histogram.ts'
import { emptyStats, type LatencyStats } from '../../src/telemetry/stats.ts'

const NOW = Date.UTC(2026, 10, 22, 10, 4, 30)

function histogram(...values: number[]): Histogram {
  const h: Histogram = {}
  for (const value of values) observe(h, value)
  return h
}

function stats(fields: Partial<LatencyStats>): LatencyStats {
  return { ...emptyStats(), requests: 2, ...fields }
}

describe('dashboard series', () => {
  it("puts the edge wait's p90 beside the client TTFT percentiles, per backend and for the fleet", () => {
    const start = bucketStart(NOW, 'minute')
    const bucket: LatencyBucket = {
      start,
      resolution: 'minute',
      backends: {
        b1: stats({ ttftClient: histogram(240, 260), edgeWait: histogram(200) }),
        b2: stats({ ttftClient: histogram(40, 50), edgeWait: {} }),
      },
    }
    const { series } = dashboardSeries([bucket], '5m', NOW)
    const last = (id: string) => series[id]?.at(-1)
    expect(last('b1')?.edgeWaitP90).toBeCloseTo(200, -1.5)
    expect(last('b2')?.edgeWaitP90).toBeNull()
    expect(last('all')?.edgeWaitP90).toBeCloseTo(200, -1.5)
    expect(last('all')?.p99).toBeGreaterThan(200)
    // Minutes without traffic: no wait to show.
    expect(series.all?.[0]?.edgeWaitP90).toBeNull()
  })

  it('draws a bucket written before the edge queue (no edgeWait) as one without waits', () => {
    const old = stats({ ttftClient: histogram(40, 50) })
    delete old.edgeWait
    const bucket: LatencyBucket = { start: bucketStart(NOW, 'minute'), resolution: 'minute', backends: { b1: old } }
    const last = dashboardSeries([bucket], '5m', NOW).series.all?.at(-1)
    expect(last).toMatchObject({ requests: 2, edgeWaitP90: null })
    expect(last?.p50).not.toBeNull()
  })
})
