import type { Context } from 'hono'
import { KEY_ID_PREFIX, KEY_PREFIX, type KeyRecord } from '../auth/key-record.ts'
import { rememberRevoked } from '../auth/revocation.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'

/**
 * POST /v1/keys/:id/revoke (admin scope): revokes a key within seconds. It sets the revoked flag in
 * the key's limiter, which every request of the key meets before its route reads the body (the auth
 * middleware asks it, at most REVOCATION_CHECK_TTL_MS apart per isolate, src/auth/revocation.ts;
 * admission asks it on every generation), then writes `disabled: true` to the key's record in KV,
 * as `keys revoke` without --url does, for the record and for an isolate whose limiter call fails
 * open. Isolates' cached records and KV's propagation would take minutes; the limiter's flag does
 * not wait for either (docs/keys.md). The key CLI's `revoke ID` calls it whenever it knows the
 * Worker's URL and an admin key.
 */
export async function revokeKeyNow(c: Context<AppEnv>): Promise<Response> {
  const id = c.req.param('id') ?? ''
  // Read past the isolate's key cache, so a key made a moment ago is found.
  const hash = /^key_[0-9a-f]{16}$/.test(id) ? await c.env.KEYS.get(KEY_ID_PREFIX + id) : null
  const record = hash ? await c.env.KEYS.get<KeyRecord>(KEY_PREFIX + hash, 'json') : null
  if (!hash || !record) throw new ApiError(404, `No API key with id '${id}'.`, { param: 'id', code: 'key_not_found' })
  const newly = await c.env.LIMITER.get(c.env.LIMITER.idFromName(id)).revoke()
  rememberRevoked(id)
  if (!record.disabled) await c.env.KEYS.put(KEY_PREFIX + hash, JSON.stringify({ ...record, disabled: true }))
  return c.json({ object: 'key.revocation', key_id: id, name: record.name, revoked: true, already_revoked: !newly && record.disabled })
}
