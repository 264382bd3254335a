// The load test's figures: per run (percentiles over its requests) and across runs (mean and
// sample standard deviation of each per-run figure). Pure functions, no I/O.
import type { RequestOutcome } from './client.ts'

/**
 * The one percentile method of the load test, named in every report: nearest rank, the smallest
 * sample value with at least p% of the sample at or below it (so p99 of 20 values is the largest,
 * and every reported value is one that was measured). bench/stats.ts uses the same method.
 */
export const PERCENTILE_METHOD = 'nearest-rank'

/** Nearest-rank percentile (p in 0..100] of an unsorted sample; null for an empty one. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)))
  return sorted[rank - 1] as number
}

export function mean(values: readonly number[]): number | null {
  if (values.length === 0) return null
  return values.reduce((sum, value) => sum + value, 0) / values.length
}

/** Sample (n − 1) standard deviation; null below two values, where it is undefined. */
export function sampleStdDev(values: readonly number[]): number | null {
  const average = mean(values)
  if (average === null || values.length < 2) return null
  const squares = values.reduce((sum, value) => sum + (value - average) ** 2, 0)
  return Math.sqrt(squares / (values.length - 1))
}

export interface Quantiles {
  p50: number | null
  p99: number | null
}

export interface RunSummary {
  run: number
  requests: number
  succeeded: number
  errors: {
    total: number
    /** Failed requests by kind (http_401, timeout, ...): see client.ts. */
    byKind: Record<string, number>
    /** The first message seen for each kind, to tell what went wrong. */
    examples: Record<string, string>
  }
  /** From the run's first request sent to its last answer. */
  wallMs: number
  /** Latency figures count successful requests only: a failed one has no complete timing. */
  ttftMs: Quantiles
  /** Over every gap of every successful request of the run. */
  itlMs: Quantiles
  /** Completion tokens of the successful requests. */
  completionTokens: number
  tokensPerSecond: {
    /** Mean over the successful requests of their own decode rate. */
    perRequest: number | null
    /** Completion tokens over the run's wall time: what the endpoint delivered. */
    aggregate: number | null
  }
}

export function summarizeRun(run: number, outcomes: readonly RequestOutcome[], wallMs: number): RunSummary {
  const byKind: Record<string, number> = {}
  const examples: Record<string, string> = {}
  const ttft: number[] = []
  const itl: number[] = []
  const rates: number[] = []
  let completionTokens = 0
  for (const outcome of outcomes) {
    if (!outcome.ok) {
      byKind[outcome.kind] = (byKind[outcome.kind] ?? 0) + 1
      examples[outcome.kind] ??= outcome.message
      continue
    }
    ttft.push(outcome.ttftMs)
    itl.push(...outcome.itlMs)
    if (outcome.tokensPerSecond !== null) rates.push(outcome.tokensPerSecond)
    completionTokens += outcome.completionTokens
  }
  const failed = Object.values(byKind).reduce((sum, count) => sum + count, 0)
  return {
    run,
    requests: outcomes.length,
    succeeded: outcomes.length - failed,
    errors: { total: failed, byKind, examples },
    wallMs,
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99) },
    itlMs: { p50: percentile(itl, 50), p99: percentile(itl, 99) },
    completionTokens,
    tokensPerSecond: {
      perRequest: mean(rates),
      aggregate: wallMs > 0 && ttft.length > 0 ? completionTokens / (wallMs / 1000) : null,
    },
  }
}

/** The per-run figures compared across runs, with how to read each from a RunSummary. */
export const RUN_METRICS = {
  ttftP50Ms: (run: RunSummary) => run.ttftMs.p50,
  ttftP99Ms: (run: RunSummary) => run.ttftMs.p99,
  itlP50Ms: (run: RunSummary) => run.itlMs.p50,
  itlP99Ms: (run: RunSummary) => run.itlMs.p99,
  tokensPerSecondPerRequest: (run: RunSummary) => run.tokensPerSecond.perRequest,
  aggregateTokensPerSecond: (run: RunSummary) => run.tokensPerSecond.aggregate,
  errors: (run: RunSummary) => run.errors.total,
} as const satisfies Record<string, (run: RunSummary) => number | null>

export type RunMetric = keyof typeof RUN_METRICS

export interface Spread {
  mean: number | null
  sd: number | null
  /** Runs that had the figure: a run whose requests all failed has no latency figures. */
  runs: number
}

export function summarizeRuns(runs: readonly RunSummary[]): Record<RunMetric, Spread> {
  const spreads = {} as Record<RunMetric, Spread>
  for (const name of Object.keys(RUN_METRICS) as RunMetric[]) {
    const values = runs.map(RUN_METRICS[name]).filter((value): value is number => value !== null)
    spreads[name] = { mean: mean(values), sd: sampleStdDev(values), runs: values.length }
  }
  return spreads
}
