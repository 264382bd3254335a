// The fleet-wide load view as each isolate holds it: the last answer of the FleetLoad Durable
// Object (src/durable/fleet-load.ts), which scrapes every backend's /metrics about once a second
// while isolates read it. A request never waits for it: it takes the last view and, at most once a
// second, starts a refresh in the background. What the ranking may trust is decided in
// src/fleet/select.ts (loadMaxAgeMs): an entry older than that is unknown, not idle.
import type { WorkerEnv } from '../env.ts'
import type { PlacementNews, PlacementPeer } from './placements.ts'

/** One backend's gauges from vLLM's /metrics (vllm/v1/metrics/loggers.py), null when not read. */
export interface BackendLoad {
  running: number | null
  waiting: number | null
  kvCacheUsage: number | null
  /** Unix ms of the scrape these values come from. */
  scrapedAt: number
}

export interface FleetLoadView {
  /** Unix ms of the object's last scrape round. */
  at: number
  backends: Record<string, BackendLoad>
}

/** The object's one instance. */
export const FLEET_LOAD_NAME = 'global'
/** An isolate asks the object at most this often. */
export const FLEET_LOAD_READ_INTERVAL_MS = 1_000
/**
 * A refresh whose answer never came (its request context ended first, or the object is
 * unreachable) stops blocking new ones after this long.
 */
const REFRESH_GIVE_UP_MS = 5_000

interface IsolateCache {
  view: FleetLoadView | null
  askedAt: number
  pending: boolean
}

/** Keyed by the namespace binding, so each test environment (and each deployment) has its own. */
const caches = new WeakMap<object, IsolateCache>()

/** The object's answer to an isolate's read: its load view and the placements news. */
export interface FleetLoadAnswer {
  view: FleetLoadView | null
  news: PlacementNews
}

/**
 * The isolate's last fleet load view (null before the first answer), at once. Starts a refresh
 * when the last ask is a second old; the refresh also swaps conversation placements with the
 * other isolates through `peer` (src/fleet/placements.ts). The refresh is not handed to waitUntil: a request that
 * routes lives at least as long as its upstream call, far longer than one RPC, and one that
 * ends first only delays the next refresh (REFRESH_GIVE_UP_MS).
 */
export function fleetLoadView(env: Pick<WorkerEnv, 'FLEET_LOAD'>, now = Date.now(), peer?: PlacementPeer): FleetLoadView | null {
  const namespace: WorkerEnv['FLEET_LOAD'] | undefined = env.FLEET_LOAD
  // A benchmark-only entry (bench/bare-worker.ts) or a script without the binding: no view.
  if (namespace === undefined) return null
  let cache = caches.get(namespace)
  if (!cache) {
    cache = { view: null, askedAt: 0, pending: false }
    caches.set(namespace, cache)
  }
  const due = now - cache.askedAt >= (cache.pending ? REFRESH_GIVE_UP_MS : FLEET_LOAD_READ_INTERVAL_MS)
  if (due) {
    const entry = cache
    entry.askedAt = now
    entry.pending = true
    void readObject(env, peer)
      .then((view) => {
        entry.view = view
      })
      .catch((error: unknown) => {
        // Keep the last view: its age makes it unknown soon enough. Only the error's name is logged.
        console.error(JSON.stringify({ event: 'fleet_load_read_failed', error: error instanceof Error ? error.name : 'unknown' }))
      })
      .finally(() => {
        entry.pending = false
      })
  }
  return cache.view
}

async function readObject(env: Pick<WorkerEnv, 'FLEET_LOAD'>, peer: PlacementPeer | undefined): Promise<FleetLoadView | null> {
  const stub = env.FLEET_LOAD.get(env.FLEET_LOAD.idFromName(FLEET_LOAD_NAME))
  const answer = await stub.exchange(peer?.takePlacements() ?? { placements: [], since: null })
  peer?.learnPlacements(answer.news)
  return answer.view
}

/** Forgets the isolate's view (tests). */
export function clearFleetLoadCache(env: Pick<WorkerEnv, 'FLEET_LOAD'>): void {
  caches.delete(env.FLEET_LOAD)
}
