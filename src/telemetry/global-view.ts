import { mergeBuckets, readWindow } from './buckets.ts'
import { countOf, quantile } from './histogram.ts'

// The fleet router's global view of each backend's latency: the median time to first token over
// the last five minute buckets in KV, across every isolate's traffic. An isolate's own samples
// see only its own requests; this is what a fresh or quiet isolate routes by.

/** Fewer samples than this in the window say too little about a backend to route by. */
const MIN_SAMPLES = 5

interface Cached {
  ttft: ReadonlyMap<string, number>
  expires: number
}

const cache = new WeakMap<KVNamespace, Cached>()

/** Backend id -> median first-token time (ms) over the last 5 minutes; cached per isolate for ttlMs. */
export async function loadGlobalTtft(kv: KVNamespace, ttlMs: number, now = Date.now()): Promise<ReadonlyMap<string, number>> {
  const cached = cache.get(kv)
  if (cached && cached.expires > now) return cached.ttft
  const ttft = new Map<string, number>()
  try {
    const { backends } = mergeBuckets(await readWindow(kv, '5m', now))
    for (const [id, stats] of Object.entries(backends)) {
      const median = countOf(stats.ttftBackend) >= MIN_SAMPLES ? quantile(stats.ttftBackend, 0.5) : null
      if (median !== null) ttft.set(id, median)
    }
  } catch (error) {
    // Routing works without the global view (on the isolate's own samples): never fail a request for it.
    console.error(JSON.stringify({ event: 'latency_view_unavailable', error: error instanceof Error ? error.name : 'unknown' }))
  }
  cache.set(kv, { ttft, expires: now + ttlMs })
  return ttft
}

export function clearGlobalTtftCache(kv: KVNamespace): void {
  cache.delete(kv)
}
