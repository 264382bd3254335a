// Key operations on the KV layout of src/auth/key-record.ts: `key:<sha256 of secret>` holds the
// record, `keyid:<id>` holds that hash so a key can be found by its public id. Shared by the CLI
// and `npm start`'s dev key.
import {
  KEY_ID_PREFIX,
  KEY_PREFIX,
  generateSecret,
  hashSecret,
  newKeyRecord,
  type KeyLimits,
  type KeyRecord,
  type PriorityClass,
} from '../../src/auth/key-record.ts'
import type { Kv } from './kv.ts'

export type KeyFields = Parameters<typeof newKeyRecord>[0]

export interface CreatedKey {
  /** The only copy of the secret there will ever be: KV keeps its hash. */
  secret: string
  record: KeyRecord
}

export async function createKey(kv: Kv, fields: KeyFields, now = Date.now()): Promise<CreatedKey> {
  const secret = generateSecret()
  const hash = await hashSecret(secret)
  const record = newKeyRecord(fields, now)
  // The record first: an id that points nowhere would be worse than a key missing from the id index.
  await kv.putMany([
    { key: KEY_PREFIX + hash, value: JSON.stringify(record) },
    { key: KEY_ID_PREFIX + record.id, value: hash },
  ])
  return { secret, record }
}

/** Every record, oldest first. */
export async function listKeys(kv: Kv): Promise<KeyRecord[]> {
  const names = await kv.listKeys(KEY_PREFIX)
  const values = await kv.getMany(names)
  const records: KeyRecord[] = []
  for (const value of values.values()) {
    // null: deleted between the list and the read.
    if (value !== null) records.push(parseRecord(value))
  }
  return records.sort((a, b) => a.created - b.created || a.id.localeCompare(b.id))
}

interface StoredKey {
  hash: string
  record: KeyRecord
}

export async function findKey(kv: Kv, id: string): Promise<StoredKey | null> {
  const hash = (await kv.getMany([KEY_ID_PREFIX + id])).get(KEY_ID_PREFIX + id)
  if (!hash) return null
  const value = (await kv.getMany([KEY_PREFIX + hash])).get(KEY_PREFIX + hash)
  return value ? { hash, record: parseRecord(value) } : null
}

/** The record behind a secret, or null when no key has it. */
export async function findKeyBySecret(kv: Kv, secret: string): Promise<KeyRecord | null> {
  const key = KEY_PREFIX + (await hashSecret(secret))
  const value = (await kv.getMany([key])).get(key)
  return value ? parseRecord(value) : null
}

/**
 * Disables the key but keeps its record, so an audit can still see who it was. Null when no key
 * has this id.
 */
export async function revokeKey(kv: Kv, id: string): Promise<{ record: KeyRecord; wasDisabled: boolean } | null> {
  const stored = await findKey(kv, id)
  if (!stored) return null
  if (stored.record.disabled) return { record: stored.record, wasDisabled: true }
  const record = { ...stored.record, disabled: true }
  await kv.putMany([{ key: KEY_PREFIX + stored.hash, value: JSON.stringify(record) }])
  return { record, wasDisabled: false }
}

/**
 * Sets the limits given (null: back to the deployment default) and keeps the others, as revokeKey
 * does; likewise the hedging switch, the priority class and the weight. Null when no key has this id.
 */
export async function updateLimits(
  kv: Kv,
  id: string,
  changes: Partial<KeyLimits>,
  hedging?: boolean | null,
  priority?: PriorityClass | null,
  weight?: number | null,
): Promise<KeyRecord | null> {
  const stored = await findKey(kv, id)
  if (!stored) return null
  const record: KeyRecord = { ...stored.record, limits: { ...stored.record.limits, ...changes } }
  // Hedging: null removes the key's own switch (the deployment decides again).
  if (hedging === null) delete record.hedging
  else if (hedging !== undefined) record.hedging = hedging
  // Priority: null removes the class (the key is standard again).
  if (priority === null) delete record.priority
  else if (priority !== undefined) record.priority = priority
  // Weight: null removes it (the key has weight 1 again).
  if (weight === null) delete record.weight
  else if (weight !== undefined) record.weight = weight
  await kv.putMany([{ key: KEY_PREFIX + stored.hash, value: JSON.stringify(record) }])
  return record
}

/** Checks the fields this CLI reads, so a damaged entry fails loudly rather than printing nonsense. */
function parseRecord(json: string): KeyRecord {
  const value: unknown = JSON.parse(json)
  if (!isKeyRecord(value)) throw new Error('A KV entry under key: is not a valid key record.')
  return value
}

function isKeyRecord(value: unknown): value is KeyRecord {
  if (typeof value !== 'object' || value === null) return false
  const record = value as Record<string, unknown>
  return (
    typeof record.id === 'string' &&
    typeof record.name === 'string' &&
    typeof record.created === 'number' &&
    (record.expires === null || typeof record.expires === 'number') &&
    typeof record.disabled === 'boolean' &&
    typeof record.limits === 'object' &&
    record.limits !== null &&
    Array.isArray(record.origins) &&
    Array.isArray(record.scopes)
  )
}
