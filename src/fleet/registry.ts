// Where the Worker's view of the fleet comes from: the FLEET KV namespace (written by the fleet
// CLI and the cron probe), cached in the isolate for FLEET_CACHE_TTL_MS, or BACKEND_URLS when no
// fleet record exists. A change made with `npm run fleet` reaches every isolate within the cache
// time plus KV's own propagation (up to about 60 s across locations); no deploy.
import type { Backend } from './backends.ts'
import {
  FLEET_KEY,
  HEALTH_KEY,
  parseFleetRecord,
  type BackendRecord,
  type FleetRecord,
  type HealthSnapshot,
  type ReasoningParser,
} from './records.ts'

export interface FleetView {
  backends: readonly BackendRecord[]
  health: HealthSnapshot | null
}

interface Cached {
  record: FleetRecord | null
  health: HealthSnapshot | null
  /**
   * When it was read, and until when its reader meant to keep it. Both bound a reuse: a caller
   * with a shorter TTL than the reader's (the FleetLoad object shares an isolate's cache) does not
   * get an older record than it asked for.
   */
  readAt: number
  expires: number
}

const cache = new WeakMap<KVNamespace, Cached>()

/** Backends from BACKEND_URLS, as records: active, weight 1. */
export function recordsFromConfig(
  backends: readonly Backend[],
  maxConcurrency: number,
  reasoningParser: ReasoningParser = 'deepseek_r1',
): BackendRecord[] {
  return backends.map((backend) => ({
    id: backend.id,
    url: backend.url,
    weight: 1,
    maxConcurrency,
    region: null,
    state: 'active',
    reasoningParser,
  }))
}

export async function loadFleet(kv: KVNamespace, fallback: readonly BackendRecord[], ttlMs: number, now = Date.now()): Promise<FleetView> {
  let cached = cache.get(kv)
  if (!cached || cached.expires <= now || now - cached.readAt >= ttlMs) {
    const [fleet, health] = await Promise.all([kv.get(FLEET_KEY, 'json'), kv.get<HealthSnapshot>(HEALTH_KEY, 'json')])
    const record = fleet === null ? null : parseFleetRecord(fleet)
    if (fleet !== null && record === null) {
      // A broken record must not take the API down: keep serving from the configuration, loudly.
      console.error(JSON.stringify({ event: 'fleet_record_invalid', key: FLEET_KEY }))
    }
    cached = { record, health, readAt: now, expires: now + ttlMs }
    cache.set(kv, cached)
  }
  const { record, health } = cached
  return { backends: record && record.backends.length > 0 ? record.backends : fallback, health }
}

/** Forgets the cached view (tests, and the cron probe after it writes a snapshot). */
export function clearFleetCache(kv: KVNamespace): void {
  cache.delete(kv)
}
