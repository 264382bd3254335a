import type { TelemetryBatch } from './batch.ts'
import { COUNTER_NAMES, type CounterName } from './counters.ts'
import { failoversOf, NO_BACKEND } from './stats.ts'

// Fleet-wide cumulative totals for Prometheus (counters only grow, so any scrape interval works),
// kept by the aggregator and persisted with it.

/** Upper bounds (seconds) of the first-token and edge-wait histograms' buckets; +Inf is implied. */
export const TTFT_BUCKETS_S = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const

export interface TtftHistogram {
  /** Cumulative counts per TTFT_BUCKETS_S bound, then +Inf. */
  buckets: number[]
  sumS: number
  count: number
}

export interface ProxyTotals {
  /** `${route} ${status}` -> responses. */
  responses: Record<string, number>
  /** `${backend} ${outcome}` -> chat requests. */
  chat: Record<string, number>
  /** Per backend: first token as the client received it. */
  ttft: Record<string, TtftHistogram>
  /**
   * Per backend (`-` for requests refused after waiting): the edge-queue wait of the requests that
   * waited, on the same buckets. Absent in totals saved before the edge queue.
   */
  edgeWait?: Record<string, TtftHistogram>
  completionTokens: Record<string, number>
  failovers: number
  /** Hedged requests by which attempt won: primary, hedge, or none (both failed). Absent in totals saved before hedging. */
  hedges?: Record<string, number>
  counters: Record<CounterName, number>
}

export function emptyTotals(): ProxyTotals {
  const counters = Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0])) as Record<CounterName, number>
  return { responses: {}, chat: {}, ttft: {}, edgeWait: {}, completionTokens: {}, failovers: 0, hedges: {}, counters }
}

function add(map: Record<string, number>, key: string, by: number): void {
  map[key] = (map[key] ?? 0) + by
}

export function addBatch(totals: ProxyTotals, batch: TelemetryBatch): void {
  for (const [key, count] of Object.entries(batch.responses)) add(totals.responses, key, count)
  for (const name of COUNTER_NAMES) totals.counters[name] = (totals.counters[name] ?? 0) + (batch.counters[name] ?? 0)
  for (const record of batch.records) {
    const backend = record.backend ?? NO_BACKEND
    add(totals.chat, `${backend} ${record.outcome}`, 1)
    add(totals.completionTokens, backend, record.completionTokens)
    totals.failovers += failoversOf(record)
    if (record.hedged) add((totals.hedges ??= {}), record.hedgeWon ?? 'none', 1)
    // `> 0` also skips a record from an isolate older than the edge queue (no edgeWaitMs).
    if (record.edgeWaitMs > 0) observeSeconds((totals.edgeWait ??= {}), backend, record.edgeWaitMs / 1000)
    if (record.ttftClientMs !== null) observeSeconds(totals.ttft, backend, record.ttftClientMs / 1000)
  }
}

function observeSeconds(histograms: Record<string, TtftHistogram>, backend: string, seconds: number): void {
  const histogram = (histograms[backend] ??= { buckets: new Array<number>(TTFT_BUCKETS_S.length + 1).fill(0), sumS: 0, count: 0 })
  TTFT_BUCKETS_S.forEach((bound, i) => {
    if (seconds <= bound) histogram.buckets[i] = (histogram.buckets[i] ?? 0) + 1
  })
  histogram.buckets[TTFT_BUCKETS_S.length] = (histogram.buckets[TTFT_BUCKETS_S.length] ?? 0) + 1
  histogram.sumS += seconds
  histogram.count++
}
