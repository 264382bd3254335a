import { HOUR_MS, MINUTE_MS, WINDOWS, bucketKey, type LatencyBucket, type WindowName, windowStarts } from '../telemetry/buckets.ts'
import { quantile } from '../telemetry/histogram.ts'
import { emptyStats, mergeStats, type LatencyStats } from '../telemetry/stats.ts'

/** One point of a backend's chart: one minute (5m, 1h windows) or one hour (24h). */
export interface SeriesPoint {
  t: number
  requests: number
  errors: number
  aborts: number
  refused: number
  /** Time to first token as the client received it (ms); null without samples. */
  p50: number | null
  p90: number | null
  p99: number | null
  /** p90 of the edge-queue wait (ms) over the requests that waited; null when none did. Part of the client's TTFT above. */
  edgeWaitP90: number | null
}

export interface DashboardSeries {
  window: WindowName
  bucketMs: number
  /** Backend id -> points, oldest first, every bucket of the window present; `all` is the whole fleet. */
  series: Record<string, SeriesPoint[]>
}

function point(t: number, stats: LatencyStats): SeriesPoint {
  const at = (q: number, histogram = stats.ttftClient) => {
    const value = quantile(histogram, q)
    return value === null ? null : Math.round(value * 10) / 10
  }
  const { outcomes } = stats
  return {
    t,
    requests: stats.requests,
    errors: outcomes.upstream_error,
    aborts: outcomes.client_abort,
    refused: outcomes.refused,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    // Absent in buckets written before the edge queue.
    edgeWaitP90: at(0.9, stats.edgeWait ?? {}),
  }
}

/** The dashboard's charts: per backend and for the fleet, a point per bucket of the window. */
export function dashboardSeries(buckets: readonly LatencyBucket[], window: WindowName, now: number): DashboardSeries {
  const { resolution } = WINDOWS[window]
  const byKey = new Map(buckets.map((bucket) => [bucketKey(bucket.start, bucket.resolution), bucket]))
  const starts = windowStarts(window, now)
  const ids = new Set<string>()
  for (const bucket of buckets) for (const id of Object.keys(bucket.backends)) ids.add(id)
  const series: Record<string, SeriesPoint[]> = { all: [] }
  for (const id of ids) series[id] = []
  for (const start of starts) {
    const bucket = byKey.get(bucketKey(start, resolution))
    const all = emptyStats()
    for (const id of ids) {
      const stats = bucket?.backends[id] ?? emptyStats()
      mergeStats(all, stats)
      series[id]?.push(point(start, stats))
    }
    series.all?.push(point(start, all))
  }
  return { window, bucketMs: resolution === 'minute' ? MINUTE_MS : HOUR_MS, series }
}
