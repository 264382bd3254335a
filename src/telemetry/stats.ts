import { countOf, mergeInto, observe, quantile, type Histogram } from './histogram.ts'
import { OUTCOMES, type Outcome, type RequestRecord } from './record.ts'

/** One backend's requests in one time bucket: counts and mergeable histograms (what KV stores). */
export interface LatencyStats {
  requests: number
  outcomes: Record<Outcome, number>
  /** Extra backends tried because of failover. */
  failovers: number
  completionTokens: number
  ttftBackend: Histogram
  ttftClient: Histogram
  /** Edge-queue waits of the requests that waited (edgeWaitMs > 0). Absent in aggregates written before the edge queue. */
  edgeWait?: Histogram
  headers: Histogram
  decode: Histogram
}

/** Requests refused before any backend are kept under this id. */
export const NO_BACKEND = '-'

export function emptyStats(): LatencyStats {
  return {
    requests: 0,
    outcomes: { ok: 0, upstream_error: 0, client_abort: 0, refused: 0 },
    failovers: 0,
    completionTokens: 0,
    ttftBackend: {},
    ttftClient: {},
    edgeWait: {},
    headers: {},
    decode: {},
  }
}

export function addRecord(stats: LatencyStats, record: RequestRecord): void {
  stats.requests++
  stats.outcomes[record.outcome]++
  stats.failovers += failoversOf(record)
  stats.completionTokens += record.completionTokens
  if (record.ttftBackendMs !== null) observe(stats.ttftBackend, record.ttftBackendMs)
  if (record.ttftClientMs !== null) observe(stats.ttftClient, record.ttftClientMs)
  // `> 0` also skips a record from an isolate older than the edge queue (no edgeWaitMs).
  if (record.edgeWaitMs > 0) observe((stats.edgeWait ??= {}), record.edgeWaitMs)
  if (record.headersMs !== null) observe(stats.headers, record.headersMs)
  if (record.decodeTokensPerS !== null) observe(stats.decode, record.decodeTokensPerS)
}

/** Extra backends tried because of failover: every attempt after the first, but a hedge is not one. */
export function failoversOf(record: RequestRecord): number {
  return Math.max(0, record.attempts - 1 - (record.hedged ? 1 : 0))
}

export function mergeStats(target: LatencyStats, source: LatencyStats): void {
  target.requests += source.requests
  for (const outcome of OUTCOMES) target.outcomes[outcome] += source.outcomes[outcome] ?? 0
  target.failovers += source.failovers
  target.completionTokens += source.completionTokens
  mergeInto(target.ttftBackend, source.ttftBackend)
  mergeInto(target.ttftClient, source.ttftClient)
  if (source.edgeWait) mergeInto((target.edgeWait ??= {}), source.edgeWait)
  mergeInto(target.headers, source.headers)
  mergeInto(target.decode, source.decode)
}

export interface Percentiles {
  p50: number | null
  p90: number | null
  p99: number | null
}

/** What /v1/latency and the dashboard show for one backend (or all) over a window. */
export interface LatencySummary {
  requests: number
  outcomes: Record<Outcome, number>
  /** Time to first token as the backend produced it and as the client received it (ms). */
  ttft_ms: { backend: Percentiles; client: Percentiles; samples: number }
  /**
   * Time waiting at the edge for a free slot while the fleet was full (ms), over the requests that
   * waited (`waited` of them); the client's TTFT includes it, the backend's does not.
   */
  edge_wait_ms: Percentiles & { waited: number }
  headers_ms: Percentiles
  decode_tokens_per_s: Percentiles
  completion_tokens: number
  failovers: number
  /** Shares of the requests that a backend failed, that the client abandoned, that were refused. */
  error_rate: number
  abort_rate: number
  refused_rate: number
}

function percentiles(histogram: Histogram): Percentiles {
  const round = (value: number | null) => (value === null ? null : Math.round(value * 10) / 10)
  return { p50: round(quantile(histogram, 0.5)), p90: round(quantile(histogram, 0.9)), p99: round(quantile(histogram, 0.99)) }
}

export function summarize(stats: LatencyStats): LatencySummary {
  const share = (count: number) => (stats.requests === 0 ? 0 : Math.round((count / stats.requests) * 10_000) / 10_000)
  return {
    requests: stats.requests,
    outcomes: { ...stats.outcomes },
    ttft_ms: { backend: percentiles(stats.ttftBackend), client: percentiles(stats.ttftClient), samples: countOf(stats.ttftBackend) },
    edge_wait_ms: { ...percentiles(stats.edgeWait ?? {}), waited: countOf(stats.edgeWait ?? {}) },
    headers_ms: percentiles(stats.headers),
    decode_tokens_per_s: percentiles(stats.decode),
    completion_tokens: stats.completionTokens,
    failovers: stats.failovers,
    error_rate: share(stats.outcomes.upstream_error),
    abort_rate: share(stats.outcomes.client_abort),
    refused_rate: share(stats.outcomes.refused),
  }
}
