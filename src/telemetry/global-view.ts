import { StaleCache, type Background } from '../cache/stale-cache.ts'
import { mergeBuckets, readWindow } from './buckets.ts'
import { countOf, quantile } from './histogram.ts'

// The fleet router's global view of each backend's latency: the median time to first token over
// the last five minute buckets in KV, across every isolate's traffic. An isolate's own samples
// see only its own requests; this is what a fresh or quiet isolate routes by.

/** Fewer samples than this in the window say too little about a backend to route by. */
const MIN_SAMPLES = 5

/** How long past its TTL a warm isolate routes by its last view while it is re-read in the background. */
const STALE_MAX_MS = 60_000

const cache = new StaleCache<KVNamespace, ReadonlyMap<string, number>>(readGlobalTtft)

/**
 * Backend id -> median first-token time (ms) over the last 5 minutes; cached per isolate for ttlMs,
 * then served stale while re-read when `background` (the request's waitUntil) is given.
 */
export function loadGlobalTtft(
  kv: KVNamespace,
  ttlMs: number,
  options: { now?: number; background?: Background; staleMaxMs?: number } = {},
): Promise<ReadonlyMap<string, number>> {
  return cache.get(kv, {
    ttlMs,
    staleMaxMs: options.staleMaxMs ?? STALE_MAX_MS,
    background: options.background,
    now: options.now ?? Date.now(),
  })
}

async function readGlobalTtft(kv: KVNamespace, now: number): Promise<ReadonlyMap<string, number>> {
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
  return ttft
}

export function clearGlobalTtftCache(kv: KVNamespace): void {
  cache.clear(kv)
}
