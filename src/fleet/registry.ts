// Where the Worker's view of the fleet comes from: the FLEET KV namespace (written by the fleet
// CLI and the cron probe), cached in the isolate for FLEET_CACHE_TTL_MS and then re-read in the
// background (src/cache/stale-cache.ts), or BACKEND_URLS when no fleet record exists. A change made
// with `npm run fleet` reaches every isolate within the cache time plus one request (the one that
// starts the re-read) plus KV's own propagation (up to about 60 s across locations); no deploy.
import { StaleCache, type Background } from '../cache/stale-cache.ts'
import { ApiError } from '../errors.ts'
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

interface FleetRead {
  record: FleetRecord | null
  health: HealthSnapshot | null
}

/**
 * How long past FLEET_CACHE_TTL_MS a warm isolate keeps routing by its last read while it re-reads
 * (in the background): the record changes rarely and KV itself takes up to a minute to spread it.
 */
export const FLEET_STALE_MAX_MS = 60_000

const cache = new StaleCache<KVNamespace, FleetRead>(readFleet)

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

/**
 * The fleet as this isolate knows it. With `background` (the request's waitUntil) a record past its
 * TTL is served while it is re-read after the response; without it (the probe, the FleetLoad
 * object) the read waits.
 */
export async function loadFleet(
  kv: KVNamespace,
  fallback: readonly BackendRecord[],
  ttlMs: number,
  options: { now?: number; background?: Background; staleMaxMs?: number } = {},
): Promise<FleetView> {
  const read = {
    ttlMs,
    staleMaxMs: options.staleMaxMs ?? FLEET_STALE_MAX_MS,
    background: options.background,
    now: options.now ?? Date.now(),
  }
  const { record, health } = await cache.get(kv, read)
  return { backends: record && record.backends.length > 0 ? record.backends : fallback, health }
}

async function readFleet(kv: KVNamespace): Promise<FleetRead> {
  const [fleet, health] = await Promise.all([kv.get(FLEET_KEY, 'json'), kv.get<HealthSnapshot>(HEALTH_KEY, 'json')])
  const record = fleet === null ? null : parseFleetRecord(fleet)
  if (fleet !== null && record === null) {
    // A broken record must not take the API down: keep serving from the configuration, loudly.
    console.error(JSON.stringify({ event: 'fleet_record_invalid', key: FLEET_KEY }))
  }
  return { record, health }
}

/**
 * The answer when the fleet is empty: no fleet record lists a backend and BACKEND_URLS names none
 * (a fresh deployment). The Worker never falls back to an address it was not given.
 */
export function noBackendsRegistered(): ApiError {
  return new ApiError(
    503,
    'No backends are registered: add one with `npm run fleet -- add <id> --url <url> --env production --remote` (docs/deploy.md).',
    { code: 'no_backend_available' },
  )
}

/** Forgets the cached view (tests, and the cron probe after it writes a snapshot). */
export function clearFleetCache(kv: KVNamespace): void {
  cache.clear(kv)
}
