import { KEY_ID_PREFIX, KEY_PREFIX, hashSecret, type KeyRecord } from './key-record.ts'

// Key records read from KV, cached in the isolate. A record changed in KV (revoked, expired
// limits) is seen within the cache TTL (KEY_CACHE_TTL_MS, 60 s by default). Unknown keys are
// cached briefly too, so a flood of bad keys does not become a flood of KV reads.

interface Entry {
  record: KeyRecord | null
  expiresAt: number
}

const MAX_ENTRIES = 10_000
const UNKNOWN_KEY_TTL_MS = 5_000
const bySecretHash = new Map<string, Entry>()
const byId = new Map<string, Entry>()

export async function findKeyBySecret(kv: KVNamespace, secret: string, ttlMs: number): Promise<KeyRecord | null> {
  const hash = await hashSecret(secret)
  return cached(bySecretHash, hash, ttlMs, () => kv.get<KeyRecord>(KEY_PREFIX + hash, 'json'))
}

export async function findKeyById(kv: KVNamespace, id: string, ttlMs: number): Promise<KeyRecord | null> {
  return cached(byId, id, ttlMs, async () => {
    const hash = await kv.get(KEY_ID_PREFIX + id)
    return hash ? kv.get<KeyRecord>(KEY_PREFIX + hash, 'json') : null
  })
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

async function cached(map: Map<string, Entry>, key: string, ttlMs: number, load: () => Promise<KeyRecord | null>) {
  const now = Date.now()
  const hit = map.get(key)
  if (hit && hit.expiresAt > now) return hit.record
  const record = await load()
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string)
  map.set(key, { record, expiresAt: now + (record ? ttlMs : Math.min(ttlMs, UNKNOWN_KEY_TTL_MS)) })
  return record
}
