// The load test's arithmetic, on hand-computed samples: the percentile method every report names,
// the mean and sample standard deviation across runs, and what a run's figures count.
import { describe, expect, it } from 'vitest'
import type { RequestOutcome } from '../../scripts/loadtest/client.ts'
import { mean, percentile, PERCENTILE_METHOD, sampleStdDev, summarizeRun, summarizeRuns } from '../../scripts/loadtest/stats.ts'

const ONE_TO_TEN = [7, 3, 10, 1, 9, 2, 8, 4, 6, 5]

describe('percentile (nearest rank)', () => {
  it('is named nearest-rank in reports', () => {
    expect(PERCENTILE_METHOD).toBe('nearest-rank')
  })

  it.each([
    [50, 5],
    [10, 1],
    [11, 2],
    [90, 9],
    [99, 10],
    [100, 10],
  ])('p%d of 1..10 (unsorted) is %d, a measured value, never an interpolation', (p, expected) => {
    expect(percentile(ONE_TO_TEN, p)).toBe(expected)
  })

  it('p99 of fewer than 100 values is the largest; p50 of an even count is the lower middle', () => {
    expect(percentile([5, 1, 3, 2], 99)).toBe(5)
    expect(percentile([5, 1, 3, 2], 50)).toBe(2)
  })

  it('p99 of 200 values is the 198th smallest', () => {
    const values = Array.from({ length: 200 }, (_, index) => 200 - index)
    expect(percentile(values, 99)).toBe(198)
  })

  it('of one value is that value, of none is null, and leaves its input unsorted', () => {
    const input = [3, 1, 2]
    expect(percentile([42], 50)).toBe(42)
    expect(percentile([42], 99)).toBe(42)
    expect(percentile([], 50)).toBeNull()
    percentile(input, 50)
    expect(input).toEqual([3, 1, 2])
  })
})

describe('mean and sample standard deviation', () => {
  it('divide by n − 1, not n', () => {
    const values = [2, 4, 4, 4, 5, 5, 7, 9] // population sd 2, sample sd sqrt(32 / 7)
    expect(mean(values)).toBe(5)
    expect(sampleStdDev(values)).toBeCloseTo(Math.sqrt(32 / 7), 12)
  })

  it('have no sd for a single run and nothing for none', () => {
    expect(sampleStdDev([3])).toBeNull()
    expect(mean([])).toBeNull()
    expect(sampleStdDev([])).toBeNull()
    expect(sampleStdDev([4, 4, 4])).toBe(0)
  })
})

const ok = (ttftMs: number, itlMs: number[], completionTokens: number, tokensPerSecond: number | null): RequestOutcome => ({
  ok: true,
  ttftMs,
  itlMs,
  completionTokens,
  tokensPerSecond,
})

describe('summarizeRun', () => {
  it('takes latencies from successful requests only and counts failures by kind with their first message', () => {
    const run = summarizeRun(
      3,
      [
        ok(10, [1, 2], 30, 100),
        { ok: false, kind: 'http_503', message: 'first 503' },
        ok(30, [3], 20, 50),
        { ok: false, kind: 'timeout', message: 'slow' },
        { ok: false, kind: 'http_503', message: 'second 503' },
        ok(20, [], 1, null),
      ],
      2_000,
    )
    expect(run).toEqual({
      run: 3,
      requests: 6,
      succeeded: 3,
      errors: { total: 3, byKind: { http_503: 2, timeout: 1 }, examples: { http_503: 'first 503', timeout: 'slow' } },
      wallMs: 2_000,
      ttftMs: { p50: 20, p99: 30 },
      itlMs: { p50: 2, p99: 3 },
      completionTokens: 51,
      // The single-token request has no decode rate and is left out of the mean.
      tokensPerSecond: { perRequest: 75, aggregate: 25.5 },
    })
  })

  it('has no latency or throughput figures when every request failed', () => {
    const run = summarizeRun(1, [{ ok: false, kind: 'http_401', message: 'Unauthorized' }], 5)
    expect(run.ttftMs).toEqual({ p50: null, p99: null })
    expect(run.tokensPerSecond).toEqual({ perRequest: null, aggregate: null })
    expect(run.errors.total).toBe(1)
  })
})

describe('summarizeRuns', () => {
  it('gives the mean and sample sd of each per-run figure, over the runs that have it', () => {
    const first = summarizeRun(1, [ok(10, [4], 10, 100)], 1_000)
    const second = summarizeRun(2, [ok(20, [6], 30, 300)], 1_000)
    const failed = summarizeRun(3, [{ ok: false, kind: 'timeout', message: 'slow' }], 1_000)
    const spreads = summarizeRuns([first, second, failed])
    expect(spreads.ttftP50Ms).toEqual({ mean: 15, sd: Math.sqrt(50), runs: 2 })
    expect(spreads.itlP99Ms).toEqual({ mean: 5, sd: Math.sqrt(2), runs: 2 })
    expect(spreads.tokensPerSecondPerRequest).toEqual({ mean: 200, sd: Math.sqrt(20_000), runs: 2 })
    expect(spreads.aggregateTokensPerSecond).toEqual({ mean: 20, sd: Math.sqrt(200), runs: 2 })
    expect(spreads.errors.mean).toBeCloseTo(1 / 3, 12)
    expect(spreads.errors.runs).toBe(3)
  })
})
