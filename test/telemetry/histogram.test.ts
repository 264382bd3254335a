import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { bucketOf, countOf, mergeInto, observe, quantile, type Histogram } from '../../src/telemetry/histogram.ts'

function nearestRank(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1] as number
}

describe('latency histogram', () => {
  it('gives each percentile within 5% of the exact nearest-rank value', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 1, max: 600_000, noNaN: true }), { minLength: 1, maxLength: 400 }),
        fc.constantFrom(0.5, 0.9, 0.99),
        (values, q) => {
          const histogram: Histogram = {}
          for (const value of values) observe(histogram, value)
          const exact = nearestRank(values, q)
          const estimate = quantile(histogram, q) as number
          expect(Math.abs(estimate - exact) / exact).toBeLessThanOrEqual(0.05)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('merges by adding counts, so a merged percentile equals one over all the samples', () => {
    const a: Histogram = {}
    const b: Histogram = {}
    const all: Histogram = {}
    for (let i = 1; i <= 500; i++) {
      observe(i % 2 ? a : b, i * 3)
      observe(all, i * 3)
    }
    const merged: Histogram = {}
    mergeInto(merged, a)
    mergeInto(merged, b)
    expect(merged).toEqual(all)
    expect(countOf(merged)).toBe(500)
    expect(quantile(merged, 0.99)).toBe(quantile(all, 0.99))
  })

  it('keeps values below one millisecond in the first bucket and answers null when empty', () => {
    expect(bucketOf(0)).toBe(0)
    expect(bucketOf(0.4)).toBe(0)
    expect(bucketOf(1)).toBe(1)
    expect(quantile({}, 0.5)).toBeNull()
  })
})
