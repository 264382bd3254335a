// GET /v1/keys/:id/usage (a key's tokens and requests per UTC day, from its limiter) and
// GET /v1/keys/board (the keys nearest their budgets and the flagged keys, from the telemetry
// aggregator): src/routes/key-usage.ts and src/telemetry/key-usage.ts.
import { env } from 'cloudflare:workers'
import { describe, expect, it, vi } from 'vitest'
import type { KeyReport } from '../../src/limits/key-report.ts'
import { dayRange, fillDays } from '../../src/telemetry/key-usage.ts'
import { randomSecret, seedKey } from '../support/keys.ts'
import { adminAuth, aggregator } from '../support/telemetry.ts'
import { callWorker, chatBody, postChat } from '../support/worker.ts'

interface HistoryAnswer {
  object: string
  key_id: string
  days: { date: string; requests: number; prompt_tokens: number; completion_tokens: number; total_tokens: number }[]
}

async function history(id: string, query = ''): Promise<Response> {
  return callWorker(`/v1/keys/${id}/usage${query}`, { headers: await adminAuth() })
}

const randomKeyId = () => `key_${[...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, '0')).join('')}`

describe('the days of a history', () => {
  it('are every UTC day of the range, oldest first, ending today, zeros where the limiter has no row', () => {
    const now = Date.UTC(2026, 2, 1, 0, 30)
    expect(dayRange(3, now)).toEqual(['2026-02-27', '2026-02-28', '2026-03-01'])
    const rows = [
      { date: '2026-02-26', requests: 9, promptTokens: 9, completionTokens: 9 },
      { date: '2026-02-28', requests: 2, promptTokens: 30, completionTokens: 12 },
    ]
    expect(fillDays(rows, 3, now)).toEqual([
      { date: '2026-02-27', requests: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
      { date: '2026-02-28', requests: 2, prompt_tokens: 30, completion_tokens: 12, total_tokens: 42 },
      { date: '2026-03-01', requests: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    ])
    expect(dayRange(400, now)).toHaveLength(400)
    expect(new Set(dayRange(400, now)).size).toBe(400)
  })
})

describe('GET /v1/keys/:id/usage', () => {
  it.each(['0', '401', '-1', '2.5', 'abc', '', '1e2', '0030 '])('refuses days=%j with a 400 naming the parameter', async (days) => {
    const record = await seedKey(env.KEYS, randomSecret())
    const response = await history(record.id, `?days=${encodeURIComponent(days)}`)
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({
      error: { type: 'invalid_request_error', param: 'days', code: 'invalid_value', message: expect.stringContaining('1 to 400') },
    })
  })

  it('answers 404 for an id that names no key, and is for admin keys only', async () => {
    for (const id of [randomKeyId(), 'not-a-key']) {
      const response = await history(id)
      expect(response.status).toBe(404)
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('key_not_found')
    }
    const record = await seedKey(env.KEYS, randomSecret())
    expect((await callWorker(`/v1/keys/${record.id}/usage`)).status).toBe(403)
    expect((await callWorker(`/v1/keys/${record.id}/usage`, { method: 'POST', headers: await adminAuth() })).status).toBe(405)
  })

  it("answers a new key's last 30 days by default, every day present, all zeros", async () => {
    const record = await seedKey(env.KEYS, randomSecret())
    const response = await history(record.id)
    expect(response.status).toBe(200)
    const body = (await response.json()) as HistoryAnswer
    expect(body).toMatchObject({ object: 'key.usage_history', key_id: record.id })
    expect(body.days.map((day) => day.date)).toEqual(dayRange(30, Date.now()))
    expect(body.days.every((day) => day.requests === 0 && day.total_tokens === 0)).toBe(true)
    expect(((await (await history(record.id, '?days=400')).json()) as HistoryAnswer).days).toHaveLength(400)
  })

  it("counts a key's requests and tokens on today's row, from its own limiter", async () => {
    const secret = randomSecret()
    const record = await seedKey(env.KEYS, secret)
    for (let i = 0; i < 2; i++) {
      const response = await postChat(chatBody(`history ${i}`, { max_tokens: 8 }), { secret })
      expect(response.status).toBe(200)
      await response.text()
    }
    await vi.waitFor(
      async () => {
        const body = (await (await history(record.id, '?days=2')).json()) as HistoryAnswer
        expect(body.days).toHaveLength(2)
        const today = body.days[1]
        expect(today?.date).toBe(new Date().toISOString().slice(0, 10))
        expect(today?.requests).toBe(2)
        expect(today?.prompt_tokens).toBeGreaterThan(0)
        expect(today?.completion_tokens).toBeGreaterThan(0)
        expect(today?.total_tokens).toBe((today?.prompt_tokens ?? 0) + (today?.completion_tokens ?? 0))
      },
      { timeout: 5000, interval: 50 },
    )
  })
})

describe('GET /v1/keys/board', () => {
  it('answers the keys nearest their budgets and the flagged keys in snake_case, for admin keys only', async () => {
    const [near, flagged] = [randomKeyId(), randomKeyId()]
    const now = Date.now()
    const nearReport: KeyReport = {
      keyId: near,
      at: now,
      budgets: [{ period: 'day', limit: 10_000, used: 9_990, remaining: 10, resetsAt: now + 3_600_000 }],
      spike: { flagged: false, hourTokens: 500, normalTokens: 600 },
    }
    await aggregator().reportKey(nearReport)
    await aggregator().reportKey({
      keyId: flagged,
      at: now,
      budgets: [],
      spike: { flagged: true, hourTokens: 120_000, normalTokens: 2_000 },
    })
    const response = await callWorker('/v1/keys/board', { headers: await adminAuth() })
    expect(response.status).toBe(200)
    const body = (await response.json()) as { object: string; closest: { key_id: string }[]; flagged: { key_id: string }[] }
    expect(body.object).toBe('key.board')
    expect(body.closest.find((entry) => entry.key_id === near)).toEqual({
      key_id: near,
      reported_at: now,
      budgets: [{ period: 'day', limit: 10_000, used: 9_990, remaining: 10, used_ratio: 0.999, resets_at: now + 3_600_000 }],
      spike: { flagged: false, hour_tokens: 500, normal_tokens: 600 },
    })
    expect(body.flagged.find((entry) => entry.key_id === flagged)).toMatchObject({
      spike: { flagged: true, hour_tokens: 120_000, normal_tokens: 2_000 },
    })
    expect(body.flagged.some((entry) => entry.key_id === near)).toBe(false)
    expect((await callWorker('/v1/keys/board')).status).toBe(403)
  })
})
