import { emptyStats, mergeStats, type LatencyStats } from './stats.ts'

// The LATENCY KV namespace: one key per minute and one per hour, each holding every backend's
// aggregate for that time (docs/kv-schema.md). Only the telemetry aggregator writes them.

export const MINUTE_MS = 60_000
export const HOUR_MS = 60 * MINUTE_MS

export type Resolution = 'minute' | 'hour'

/** Backend id -> its aggregate; NO_BACKEND holds the requests refused before any backend. */
export type BackendStatsMap = Record<string, LatencyStats>

/** The value of a `lat:m:` or `lat:h:` key. */
export interface LatencyBucket {
  /** The bucket's first millisecond. */
  start: number
  resolution: Resolution
  backends: BackendStatsMap
}

export function bucketStart(at: number, resolution: Resolution): number {
  const size = resolution === 'minute' ? MINUTE_MS : HOUR_MS
  return Math.floor(at / size) * size
}

/** `lat:m:2026-11-22T10:05` and `lat:h:2026-11-22T10`: UTC, readable, sorted by time. */
export function bucketKey(start: number, resolution: Resolution): string {
  const iso = new Date(start).toISOString()
  return resolution === 'minute' ? `lat:m:${iso.slice(0, 16)}` : `lat:h:${iso.slice(0, 13)}`
}

export const WINDOWS = {
  '5m': { resolution: 'minute', buckets: 5 },
  '1h': { resolution: 'minute', buckets: 60 },
  '24h': { resolution: 'hour', buckets: 24 },
} as const satisfies Record<string, { resolution: Resolution; buckets: number }>

export type WindowName = keyof typeof WINDOWS

/** The bucket starts a window covers, oldest first; the newest is the one still filling. */
export function windowStarts(window: WindowName, now: number): number[] {
  const { resolution, buckets } = WINDOWS[window]
  const size = resolution === 'minute' ? MINUTE_MS : HOUR_MS
  const newest = bucketStart(now, resolution)
  return Array.from({ length: buckets }, (_, i) => newest - (buckets - 1 - i) * size)
}

/** Reads a window's buckets from KV in one bulk read; missing buckets (no traffic) are skipped. */
export async function readWindow(kv: KVNamespace, window: WindowName, now: number): Promise<LatencyBucket[]> {
  const { resolution } = WINDOWS[window]
  const keys = windowStarts(window, now).map((start) => bucketKey(start, resolution))
  const values = await kv.get<LatencyBucket>(keys, 'json')
  const buckets: LatencyBucket[] = []
  for (const key of keys) {
    const value = values.get(key)
    if (value && typeof value === 'object' && typeof value.backends === 'object') buckets.push(value)
  }
  return buckets
}

/** Every backend's aggregate over the buckets, and all of them together under `overall`. */
export function mergeBuckets(buckets: readonly LatencyBucket[]): { backends: BackendStatsMap; overall: LatencyStats } {
  const backends: BackendStatsMap = {}
  const overall = emptyStats()
  for (const bucket of buckets) {
    for (const [id, stats] of Object.entries(bucket.backends)) {
      mergeStats((backends[id] ??= emptyStats()), stats)
      mergeStats(overall, stats)
    }
  }
  return { backends, overall }
}
