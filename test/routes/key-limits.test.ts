// GET /v1/keys/:id/limits (src/routes/key-limits.ts), the answer the key CLI's `usage` prints: here
// its priority class, weight and budgets; its limits and usage are tested with the limits themselves (test/limits/).
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

  it('answers the budgets of a key with what is used of them and when they reset, null for a period without one', async () => {
    const record = await seedKey(env.KEYS, randomSecret(), {
      limits: { requestsPerMinute: null, tokensPerMinute: null, concurrentStreams: null, maxOutputTokens: null, budgetDay: 5_000 },
    })
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(record.id))
    const limits = {
      requestsPerMinute: 100,
      tokensPerMinute: 100_000,
      concurrentStreams: 10,
      concurrentStreamsPerIp: null,
      budgetDay: 5_000,
    }
    expect((await limiter.admit({ leaseId: 'in-flight', reserveTokens: 1_200, limits, clientIp: null })).admitted).toBe(true)
    const response = await keyLimits(record.id)
    expect(response.status).toBe(200)
    const midnight = (Math.floor(Date.now() / 86_400_000) + 1) * 86_400
    expect(await response.json()).toMatchObject({
      budgets: { day: { limit: 5_000, used: 1_200, remaining: 3_800, resets_at: midnight }, month: null },
      spike: { flagged: false, hour_tokens: 0, normal_tokens: 0 },
    })
    await limiter.settle('in-flight', { promptTokens: 0, completionTokens: 0 })
  })

  it('answers no budget for a key whose record has none', async () => {
    const record = await seedKey(env.KEYS, randomSecret())
    expect(await (await keyLimits(record.id)).json()).toMatchObject({ budgets: { day: null, month: null } })
  })
})
