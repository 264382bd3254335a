// A mergeable latency histogram with log-spaced buckets. Aggregates from many isolates and many
// minutes are summed bucket by bucket, so percentiles over any window come from sums of counts,
// with a bounded relative error, instead of from raw samples that KV could not hold.

/** Each bucket is 10% wider than the one below it: a percentile is within ~5% of the true value. */
const GROWTH = 1.1
const LOG_GROWTH = Math.log(GROWTH)

/** Bucket index -> count, sparse (JSON object keys). Values below 1 share bucket 0. */
export type Histogram = Record<string, number>

export function bucketOf(value: number): number {
  if (!(value >= 1)) return 0
  return Math.floor(Math.log(value) / LOG_GROWTH) + 1
}

/** The value a bucket stands for: the geometric middle of its range. */
function bucketValue(index: number): number {
  if (index === 0) return 0.5
  return Math.sqrt(GROWTH ** (index - 1) * GROWTH ** index)
}

export function observe(histogram: Histogram, value: number): void {
  const key = String(bucketOf(value))
  histogram[key] = (histogram[key] ?? 0) + 1
}

export function mergeInto(target: Histogram, source: Histogram): void {
  for (const [key, count] of Object.entries(source)) target[key] = (target[key] ?? 0) + count
}

export function countOf(histogram: Histogram): number {
  let total = 0
  for (const count of Object.values(histogram)) total += count
  return total
}

/**
 * The q-quantile (0 < q <= 1) by nearest rank over the buckets: the value of the bucket holding
 * the ceil(q * n)-th smallest sample. Null for an empty histogram.
 */
export function quantile(histogram: Histogram, q: number): number | null {
  const buckets = Object.entries(histogram)
    .map(([key, count]) => [Number(key), count] as const)
    .sort((a, b) => a[0] - b[0])
  let total = 0
  for (const [, count] of buckets) total += count
  if (total === 0) return null
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (const [index, count] of buckets) {
    seen += count
    if (seen >= rank) return bucketValue(index)
  }
  return bucketValue((buckets.at(-1) as readonly [number, number])[0])
}
