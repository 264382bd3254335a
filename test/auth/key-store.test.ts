import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { DEFAULT_KEY_WEIGHT, MAX_KEY_WEIGHT, isKeyWeight, keyWeight, newKeyRecord } from '../../src/auth/key-record.ts'
import { STALE_MAX_MS, findKeyBySecret } from '../../src/auth/key-store.ts'
import app from '../../src/index.ts'
import { randomSecret, seedKey } from '../support/keys.ts'

// Stale-while-revalidate key records (src/auth/key-store.ts), on the real KEYS namespace: every
// read goes to it, through a gate the test opens, so a read the request waited on is visible.

function gatedKv() {
  const held: (() => void)[] = []
  let reads = 0
  const kv = {
    async get(key: string, type?: 'json') {
      reads++
      await new Promise<void>((resolve) => held.push(resolve))
      return type === 'json' ? env.KEYS.get(key, 'json') : env.KEYS.get(key)
    },
  }
  return {
    kv: kv as unknown as KVNamespace,
    reads: () => reads,
    /** Lets the reads waiting at the gate through, once there is one (the lookup hashes first). */
    async open() {
      await vi.waitFor(() => expect(held.length).toBeGreaterThan(0))
      for (const resolve of held.splice(0)) resolve()
    },
  }
}

/** Resolves `promise` only if it settles without any held KV read being released. */
async function settlesAlone<T>(promise: Promise<T>): Promise<{ settled: boolean; value?: T }> {
  const marker = Symbol('pending')
  const raced = await Promise.race([promise, new Promise<typeof marker>((resolve) => setTimeout(resolve, 50, marker))])
  return raced === marker ? { settled: false } : { settled: true, value: raced }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

afterEach(() => vi.restoreAllMocks())

describe('key records, stale-while-revalidate', () => {
  it('answers a known key past its TTL from the isolate at once and re-reads it from KV behind the request', async () => {
    const secret = randomSecret()
    const record = await seedKey(env.KEYS, secret, { name: 'before' })
    const gate = gatedKv()
    const cold = findKeyBySecret(gate.kv, secret, 50, () => {})
    await gate.open()
    expect((await cold)?.name).toBe('before')
    await seedKey(env.KEYS, secret, { ...record, name: 'after' })
    await sleep(80)
    const background: Promise<unknown>[] = []
    const warm = await settlesAlone(findKeyBySecret(gate.kv, secret, 50, (work) => background.push(work)))
    expect(warm).toEqual({ settled: true, value: expect.objectContaining({ name: 'before' }) })
    expect(background).toHaveLength(1)
    // One refresh however many requests come meanwhile.
    await findKeyBySecret(gate.kv, secret, 50, (work) => background.push(work))
    expect(background).toHaveLength(1)
    expect(gate.reads()).toBe(2)
    await gate.open()
    await Promise.all(background)
    expect((await settlesAlone(findKeyBySecret(gate.kv, secret, 50, () => {}))).value).toMatchObject({ name: 'after' })
  })

  it('waits for KV once a record is more than STALE_MAX_MS past its TTL, or when nothing can run after the response', async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret)
    const gate = gatedKv()
    const cold = findKeyBySecret(gate.kv, secret, 50, () => {})
    await gate.open()
    await cold
    await sleep(80)
    expect((await settlesAlone(findKeyBySecret(gate.kv, secret, 50))).settled).toBe(false)
    await gate.open()
    const now = Date.now()
    vi.spyOn(Date, 'now').mockReturnValue(now + 50 + STALE_MAX_MS + 1)
    const tooOld = findKeyBySecret(gate.kv, secret, 50, () => {})
    expect((await settlesAlone(tooOld)).settled).toBe(false)
    await gate.open()
    expect(await tooOld).not.toBeNull()
  })

  it('never serves an unknown key stale: a key created a moment ago is found on the next read past the short TTL', async () => {
    const secret = randomSecret()
    const gate = gatedKv()
    const unknown = findKeyBySecret(gate.kv, secret, 50, () => {})
    await gate.open()
    expect(await unknown).toBeNull()
    await seedKey(env.KEYS, secret)
    await sleep(80)
    const known = findKeyBySecret(gate.kv, secret, 50, () => {})
    expect((await settlesAlone(known)).settled).toBe(false)
    await gate.open()
    expect(await known).not.toBeNull()
  })

  it('keeps serving the stale record when its refresh fails, and tries again on the next request', async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret)
    const gate = gatedKv()
    const cold = findKeyBySecret(gate.kv, secret, 50, () => {})
    await gate.open()
    await cold
    await sleep(80)
    const failing = { get: () => Promise.reject(new Error('KV unreachable')) } as unknown as KVNamespace
    const background: Promise<unknown>[] = []
    expect(await findKeyBySecret(failing, secret, 50, (work) => background.push(work))).not.toBeNull()
    await Promise.all(background)
    expect(await findKeyBySecret(failing, secret, 50, (work) => background.push(work))).not.toBeNull()
    expect(background).toHaveLength(2)
  })

  it('lets a warm Worker answer a request past the key TTL while its KV read is still held', async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret)
    const gate = gatedKv()
    const call = async () => {
      const ctx = createExecutionContext()
      const request = new Request('http://gateway.test/v1/models', { headers: { authorization: `Bearer ${secret}` } })
      return { ctx, response: app.fetch(request, { ...env, KEYS: gate.kv, KEY_CACHE_TTL_MS: '50' }, ctx) }
    }
    const cold = await call()
    await gate.open()
    expect((await cold.response).status).toBe(200)
    await waitOnExecutionContext(cold.ctx)
    await sleep(80)
    const warm = await call()
    const answered = await settlesAlone(Promise.resolve(warm.response))
    expect(answered.settled).toBe(true)
    expect(answered.value?.status).toBe(200)
    expect(gate.reads()).toBe(2)
    await gate.open()
    await waitOnExecutionContext(warm.ctx)
  })
})

describe('key records, weight', () => {
  it('gives a record without a weight the default weight 1, and newKeyRecord writes no weight unless given one', () => {
    const record = newKeyRecord({ name: 'no weight' })
    expect(record).not.toHaveProperty('weight')
    expect(DEFAULT_KEY_WEIGHT).toBe(1)
    expect(keyWeight(record)).toBe(1)
    expect(newKeyRecord({ name: 'weighted', weight: 3 })).toMatchObject({ weight: 3 })
  })

  it.each([0.001, 0.5, 1, 2, 999.5, 1000])('takes the weight %s as stored', (weight) => {
    expect(isKeyWeight(weight)).toBe(true)
    expect(keyWeight(newKeyRecord({ name: 'weighted', weight }))).toBe(weight)
  })

  it.each([0, -1, 1000.001, Number.POSITIVE_INFINITY, Number.NaN, '2', null])(
    'refuses the weight %s, and reads a record that stores it as weight 1',
    (weight) => {
      expect(MAX_KEY_WEIGHT).toBe(1000)
      expect(isKeyWeight(weight)).toBe(false)
      // As a record hand-edited in KV would hold it: nothing checks records on their way in.
      expect(keyWeight({ weight } as unknown as { weight?: number })).toBe(1)
    },
  )
})
