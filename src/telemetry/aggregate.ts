import type { TelemetryBatch } from './batch.ts'
import { HOUR_MS, MINUTE_MS, bucketKey, bucketStart, type BackendStatsMap, type LatencyBucket, type Resolution } from './buckets.ts'
import { addRecord, emptyStats, NO_BACKEND } from './stats.ts'
import { addBatch, emptyTotals, type ProxyTotals } from './totals.ts'

/**
 * KV accepts one write per second per key; the aggregator leaves 1.1 s between two writes of a
 * key. The margin is for the clocks: the interval is decided when a flush starts, and a write can
 * leave a moment later than the previous one did (a full CI run once saw 999 ms between the puts
 * of two decisions 1000 ms apart).
 */
export const MIN_KEY_WRITE_INTERVAL_MS = 1100
/** Buckets kept in the aggregator (and so still accepting late records) after they end. */
const KEEP_MINUTES_MS = 70 * MINUTE_MS
const KEEP_HOURS_MS = 26 * HOUR_MS
/** An isolate that has not reported for this long no longer counts in the in-flight gauge. */
const ISOLATE_STALE_MS = 60_000

export interface AggregateOptions {
  minuteTtlS: number
  hourTtlS: number
}

/** A KV write the aggregator wants done: the whole bucket, replacing the previous value. */
export interface BucketWrite {
  key: string
  value: LatencyBucket
  ttlS: number
}

/** Where the aggregator keeps its state across restarts (the Durable Object's storage). */
export interface AggregateStore {
  get<T>(key: string): T | undefined
  put(key: string, value: unknown): void
  delete(key: string): void
  list<T>(prefix: string): Iterable<[string, T]>
}

/**
 * The fleet-wide aggregate: per backend and minute, per backend and hour, and the Prometheus
 * totals. Each batch is added at once (and persisted); KV gets whole buckets, each key at most
 * once per MIN_KEY_WRITE_INTERVAL_MS, whatever the traffic, so KV's one-write-per-second-per-key
 * rule holds by construction.
 */
export class TelemetryAggregate {
  totals: ProxyTotals
  #buckets = new Map<string, LatencyBucket>()
  #dirty = new Set<string>()
  #writtenAt = new Map<string, number>()
  #isolates = new Map<string, { streams: number; at: number }>()
  #store: AggregateStore
  #options: AggregateOptions
  lateRecords = 0

  constructor(store: AggregateStore, options: AggregateOptions) {
    this.#store = store
    this.#options = options
    this.totals = store.get<ProxyTotals>('totals') ?? emptyTotals()
    for (const [, bucket] of store.list<LatencyBucket>('bucket:')) this.#buckets.set(bucketKey(bucket.start, bucket.resolution), bucket)
    for (const key of store.get<string[]>('dirty') ?? []) this.#dirty.add(key)
    for (const [key, at] of Object.entries(store.get<Record<string, number>>('writtenAt') ?? {})) this.#writtenAt.set(key, at)
  }

  ingest(batch: TelemetryBatch, now: number): void {
    this.#isolates.set(batch.isolate, { streams: batch.streamsInFlight, at: now })
    addBatch(this.totals, batch)
    const touched = new Set<string>()
    for (const record of batch.records) {
      if (record.endedAt < now - KEEP_MINUTES_MS) {
        // Its minute left the aggregator long ago: rewriting that key would erase what KV holds.
        this.lateRecords++
        continue
      }
      for (const resolution of ['minute', 'hour'] as const) {
        const bucket = this.#bucket(record.endedAt, resolution)
        addRecord((bucket.backends[record.backend ?? NO_BACKEND] ??= emptyStats()), record)
        touched.add(bucketKey(bucket.start, resolution))
      }
    }
    for (const key of touched) {
      this.#dirty.add(key)
      this.#store.put(`bucket:${key}`, this.#buckets.get(key))
    }
    this.#store.put('totals', this.totals)
    this.#store.put('dirty', [...this.#dirty])
  }

  /** Streams in flight across the isolates heard from recently. */
  streamsInFlight(now: number): { streams: number; isolates: number } {
    let streams = 0
    let isolates = 0
    for (const [id, report] of this.#isolates) {
      if (report.at < now - ISOLATE_STALE_MS) {
        this.#isolates.delete(id)
        continue
      }
      streams += report.streams
      isolates++
    }
    return { streams, isolates }
  }

  /**
   * The buckets due for KV now (changed, and not written within the last second), marked written.
   * Call `failed` with any that could not be written, so they are tried again.
   */
  takeDue(now: number): BucketWrite[] {
    const due: BucketWrite[] = []
    for (const key of this.#dirty) {
      if (now - (this.#writtenAt.get(key) ?? -Infinity) < MIN_KEY_WRITE_INTERVAL_MS) continue
      const bucket = this.#buckets.get(key)
      this.#dirty.delete(key)
      if (!bucket) continue
      this.#writtenAt.set(key, now)
      const ttlS = bucket.resolution === 'minute' ? this.#options.minuteTtlS : this.#options.hourTtlS
      due.push({ key, value: bucket, ttlS })
    }
    this.#prune(now)
    this.#persistBookkeeping()
    return due
  }

  failed(writes: readonly BucketWrite[]): void {
    for (const { key } of writes) this.#dirty.add(key)
    this.#persistBookkeeping()
  }

  /** When the next KV write may happen, or null when nothing waits. */
  nextWriteAt(now: number): number | null {
    let next: number | null = null
    for (const key of this.#dirty) {
      const at = Math.max(now, (this.#writtenAt.get(key) ?? -Infinity) + MIN_KEY_WRITE_INTERVAL_MS)
      next = next === null ? at : Math.min(next, at)
    }
    return next
  }

  #bucket(at: number, resolution: Resolution): LatencyBucket {
    const start = bucketStart(at, resolution)
    const key = bucketKey(start, resolution)
    let bucket = this.#buckets.get(key)
    if (!bucket) {
      bucket = { start, resolution, backends: {} as BackendStatsMap }
      this.#buckets.set(key, bucket)
    }
    return bucket
  }

  /** Forgets written buckets that can no longer change. */
  #prune(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      const keep = bucket.resolution === 'minute' ? KEEP_MINUTES_MS : KEEP_HOURS_MS
      const size = bucket.resolution === 'minute' ? MINUTE_MS : HOUR_MS
      if (this.#dirty.has(key) || bucket.start + size > now - keep) continue
      this.#buckets.delete(key)
      this.#writtenAt.delete(key)
      this.#store.delete(`bucket:${key}`)
    }
  }

  #persistBookkeeping(): void {
    this.#store.put('dirty', [...this.#dirty])
    this.#store.put('writtenAt', Object.fromEntries(this.#writtenAt))
  }
}
