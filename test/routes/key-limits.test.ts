// GET /v1/keys/:id/limits (src/routes/key-limits.ts), the answer the key CLI's `usage` prints: here
// its priority class and weight; its limits and usage are tested with the limits themselves (test/limits/).
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import type { KeyRecord } from '../../src/auth/key-record.ts'
import { randomSecret, seedKey } from '../support/keys.ts'
import { callWorker } from '../support/worker.ts'

let adminSecret: string | null = null
async function keyLimits(id: string): Promise<Response> {
  if (adminSecret === null) {
    adminSecret = randomSecret()
    await seedKey(env.KEYS, adminSecret, { scopes: ['admin'] })
  }
  return callWorker(`/v1/keys/${id}/limits`, { headers: { authorization: `Bearer ${adminSecret}` } })
}

describe('GET /v1/keys/:id/limits', () => {
  it.each([
    [{ priority: 'interactive' }, 'interactive'],
    [{ priority: 'batch' }, 'batch'],
    [{ priority: 'standard' }, 'standard'],
    [{}, 'standard'],
  ] satisfies [Partial<KeyRecord>, string][])('answers the priority class of a key whose record has %j: %s', async (fields, priority) => {
    const record = await seedKey(env.KEYS, randomSecret(), fields)
    const response = await keyLimits(record.id)
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ object: 'key.limits', key_id: record.id, priority })
  })

  it.each([
    [{ weight: 2 }, 2],
    [{ weight: 0.5 }, 0.5],
    [{ weight: 1000 }, 1000],
    [{}, 1],
    [{ weight: 0 }, 1],
    [{ weight: 5000 }, 1],
  ] satisfies [Partial<KeyRecord>, number][])('answers the weight of a key whose record has %j: %s', async (fields, weight) => {
    const record = await seedKey(env.KEYS, randomSecret(), fields)
    const response = await keyLimits(record.id)
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ object: 'key.limits', key_id: record.id, priority: 'standard', weight })
  })
})
