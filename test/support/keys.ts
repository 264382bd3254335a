// Test keys, written into the KEYS namespace the way the key CLI writes them.
import { KEY_ID_PREFIX, KEY_PREFIX, hashSecret, newKeyRecord, type KeyRecord } from '../../src/auth/key-record.ts'

/** A well-formed secret for the key every Worker test file starts with (see seed-keys.setup.ts). */
export const TEST_SECRET = `sk-${'T'.repeat(43)}`
export const TEST_KEY_ID = 'key_0000000000000001'

export async function seedKey(kv: KVNamespace, secret: string, fields: Partial<KeyRecord> = {}): Promise<KeyRecord> {
  const record = newKeyRecord({ name: 'test', scopes: ['chat'], ...fields })
  const hash = await hashSecret(secret)
  await kv.put(KEY_PREFIX + hash, JSON.stringify(record))
  await kv.put(KEY_ID_PREFIX + record.id, hash)
  return record
}

/** A fresh random well-formed secret, for tests that need a key of their own. */
export function randomSecret(): string {
  return `sk-${[...crypto.getRandomValues(new Uint8Array(32))]
    .map((b) => (b % 36).toString(36))
    .join('')
    .padEnd(43, 'x')
    .slice(0, 43)}`
}
