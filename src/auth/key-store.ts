import type { Background } from '../cache/stale-cache.ts'
import { KEY_ID_PREFIX, KEY_PREFIX, hashSecret, type KeyRecord } from './key-record.ts'

// Key records read from KV, cached in the isolate for the cache TTL (KEY_CACHE_TTL_MS, 60 s by
// default). Stale-while-revalidate: a caller that can run work after its response (`background`,
// the request's waitUntil) gets a record past its TTL at once and the isolate re-reads it behind
// the request, so a warm isolate never waits on KV for a key it knows. A record is served stale for
// at most STALE_MAX_MS past its TTL (KV unreachable, or an isolate idle that long); after that the
// request waits for KV, as a cold isolate does. A change in KV (limits, scopes) is therefore seen by
// the request after the refresh, and a revocation stops within about a second through the key's
// limiter (src/auth/revocation.ts). Unknown keys are cached briefly and never served stale, so a
// flood of bad keys is not a flood of KV reads and a key made a moment ago works within seconds.

interface Entry {
  record: KeyRecord | null
  /** Fresh until then; past it, served stale (until staleUntil) while one refresh runs. */
  expiresAt: number
  staleUntil: number
  refreshing: boolean
}

export type { Background } from '../cache/stale-cache.ts'

const MAX_ENTRIES = 10_000
const UNKNOWN_KEY_TTL_MS = 5_000
/** How long past its TTL a known key's record may still be served while it is re-read. */
export const STALE_MAX_MS = 5 * 60_000
const bySecretHash = new Map<string, Entry>()
const byId = new Map<string, Entry>()

export async function findKeyBySecret(kv: KVNamespace, secret: string, ttlMs: number, background?: Background): Promise<KeyRecord | null> {
  const hash = await hashSecret(secret)
  return cached(bySecretHash, hash, ttlMs, () => kv.get<KeyRecord>(KEY_PREFIX + hash, 'json'), background)
}

export async function findKeyById(kv: KVNamespace, id: string, ttlMs: number, background?: Background): Promise<KeyRecord | null> {
  const load = async () => {
    const hash = await kv.get(KEY_ID_PREFIX + id)
    return hash ? kv.get<KeyRecord>(KEY_PREFIX + hash, 'json') : null
  }
  return cached(byId, id, ttlMs, load, background)
}

/** Why a stored key may not be used now, or null when it may. */
export function keyProblem(record: KeyRecord, nowMs = Date.now()): 'revoked' | 'expired' | null {
  if (record.disabled) return 'revoked'
  if (record.expires !== null && record.expires * 1000 <= nowMs) return 'expired'
  return null
}

/** For tests: forget every cached record. */
export function clearKeyCache(): void {
  bySecretHash.clear()
  byId.clear()
}

async function cached(
  map: Map<string, Entry>,
  key: string,
  ttlMs: number,
  load: () => Promise<KeyRecord | null>,
  background: Background | undefined,
): Promise<KeyRecord | null> {
  const now = Date.now()
  const hit = map.get(key)
  if (hit && hit.expiresAt > now) return hit.record
  if (hit?.record && background && ttlMs > 0 && hit.staleUntil > now) {
    if (!hit.refreshing) {
      hit.refreshing = true
      // A failed refresh keeps the stale record (within its bound); the next request tries again.
      background(
        refresh(map, key, ttlMs, load).catch(() => {
          hit.refreshing = false
        }),
      )
    }
    return hit.record
  }
  return refresh(map, key, ttlMs, load)
}

async function refresh(map: Map<string, Entry>, key: string, ttlMs: number, load: () => Promise<KeyRecord | null>) {
  const record = await load()
  const now = Date.now()
  const expiresAt = now + (record ? ttlMs : Math.min(ttlMs, UNKNOWN_KEY_TTL_MS))
  // Re-inserted at the end: the oldest entry goes first when the map is full.
  map.delete(key)
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string)
  map.set(key, { record, expiresAt, staleUntil: expiresAt + STALE_MAX_MS, refreshing: false })
  return record
}
