// `keys usage ID --days N` (a key's requests and tokens per UTC day, from GET /v1/keys/:id/usage)
// and `keys board` (the keys nearest their budgets and the flagged keys, from GET /v1/keys/board),
// against a stand-in for the Worker.
import { describe, expect, it } from 'vitest'
import { runKeysCli, type CliDeps } from '../../scripts/keys/cli.ts'

const ADMIN_KEY = `sk-${'h'.repeat(43)}`
const KEY_ID = 'key_3f9c0a1b2c3d4e5f'
const OTHER_ID = 'key_00000000000000aa'

/** What GET /v1/keys/:id/limits answers (src/routes/key-limits.ts). */
const LIMITS = {
  object: 'key.limits',
  key_id: KEY_ID,
  enforced: true,
  limits: {
    requests_per_minute: 60,
    tokens_per_minute: 250000,
    concurrent_streams: 8,
    concurrent_streams_per_ip: null,
    max_output_tokens: null,
  },
  source: { requests_per_minute: 'key', tokens_per_minute: 'default', concurrent_streams: 'default' },
  usage: {
    in_flight: 0,
    requests: { limit: 60, remaining: 60, reset_ms: 0 },
    tokens: { limit: 250000, remaining: 250000, reset_ms: 0 },
    totals: { admitted: 5, refused: {}, prompt_tokens: 300, completion_tokens: 900, expired_leases: 0 },
  },
}

const HISTORY = {
  object: 'key.usage_history',
  key_id: KEY_ID,
  days: [
    { date: '2026-12-05', requests: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    { date: '2026-12-06', requests: 3, prompt_tokens: 120, completion_tokens: 480, total_tokens: 600 },
    { date: '2026-12-07', requests: 2, prompt_tokens: 180, completion_tokens: 420, total_tokens: 600 },
  ],
}

const NOW = Date.UTC(2026, 11, 7, 12, 0, 0)
const BOARD = {
  object: 'key.board',
  closest: [
    {
      key_id: KEY_ID,
      reported_at: NOW - 4_000,
      budgets: [
        { period: 'day', limit: 1000, used: 930, remaining: 70, used_ratio: 0.93, resets_at: Date.UTC(2026, 11, 8) },
        { period: 'month', limit: 20000, used: 5000, remaining: 15000, used_ratio: 0.25, resets_at: Date.UTC(2027, 0, 1) },
      ],
      spike: { flagged: false, hour_tokens: 300, normal_tokens: 250 },
    },
  ],
  flagged: [
    {
      key_id: OTHER_ID,
      reported_at: NOW - 12_000,
      budgets: [],
      spike: { flagged: true, hour_tokens: 80000, normal_tokens: 2000 },
    },
  ],
}

/** A Worker stand-in answering by path; records the URLs it was asked. */
function fakeWorker(answers: Record<string, { body: unknown; status?: number }>) {
  const calls: { url: string; authorization: string | null }[] = []
  const fetch: CliDeps['fetch'] = async (url, init) => {
    calls.push({ url, authorization: new Headers(init.headers).get('authorization') })
    const answer = answers[new URL(url).pathname]
    if (answer === undefined) return Response.json({ error: { message: 'No route.', code: 'unknown_route' } }, { status: 404 })
    return Response.json(answer.body, { status: answer.status ?? 200 })
  }
  return { calls, fetch }
}

async function run(argv: string[], deps: Partial<CliDeps>) {
  const stdout: string[] = []
  const stderr: string[] = []
  const out = { log: (text: string) => stdout.push(text), error: (text: string) => stderr.push(text) }
  const code = await runKeysCli(argv, { env: { GATEWAY_ADMIN_KEY: ADMIN_KEY }, now: () => NOW, ...deps, out })
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') }
}

const worker = () =>
  fakeWorker({
    [`/v1/keys/${KEY_ID}/limits`]: { body: LIMITS },
    [`/v1/keys/${KEY_ID}/usage`]: { body: HISTORY },
    '/v1/keys/board': { body: BOARD },
  })

describe('keys usage --days', () => {
  it('prints the limits as before, then a row per UTC day and a total line', async () => {
    const fake = worker()
    const result = await run(['usage', KEY_ID, '--url', 'https://gateway.example/', '--days', '3'], fake)
    expect(result).toMatchObject({ code: 0, stderr: '' })
    expect(fake.calls.map((call) => call.url)).toEqual([
      `https://gateway.example/v1/keys/${KEY_ID}/limits`,
      `https://gateway.example/v1/keys/${KEY_ID}/usage?days=3`,
    ])
    expect(fake.calls.every((call) => call.authorization === `Bearer ${ADMIN_KEY}`)).toBe(true)
    expect(result.stdout).toMatch(/^LIMIT\s+VALUE\s+SOURCE/m)
    expect(result.stdout).toContain('Usage per UTC day over the last 3 days')
    expect(result.stdout).toMatch(/^DATE\s+REQUESTS\s+PROMPT\s+COMPLETION\s+TOTAL$/m)
    expect(result.stdout).toMatch(/^2026-12-05\s+0\s+0\s+0\s+0$/m)
    expect(result.stdout).toMatch(/^2026-12-06\s+3\s+120\s+480\s+600$/m)
    expect(result.stdout).toMatch(/^2026-12-07\s+2\s+180\s+420\s+600$/m)
    expect(result.stdout).toMatch(/^total\s+5\s+300\s+900\s+1200$/m)
    // The history comes after what usage printed before it.
    expect(result.stdout.indexOf('LIMIT')).toBeLessThan(result.stdout.indexOf('DATE'))
    expect(result.stdout).not.toContain(ADMIN_KEY)
  })

  it('asks for no history without --days, and prints both answers as JSON with --json', async () => {
    const plain = worker()
    const without = await run(['usage', KEY_ID, '--url', 'http://127.0.0.1:8787'], plain)
    expect(without.code).toBe(0)
    expect(plain.calls).toHaveLength(1)
    expect(without.stdout).not.toContain('DATE')
    const json = await run(['usage', KEY_ID, '--url', 'http://127.0.0.1:8787', '--days', '3', '--json'], worker())
    expect(JSON.parse(json.stdout)).toEqual({ ...LIMITS, usage_history: HISTORY })
  })

  it.each(['0', '401', 'ten', '1.5', '-3'])('refuses --days %s with exit 2, asking nothing', async (days) => {
    const fake = worker()
    const result = await run(['usage', KEY_ID, '--url', 'http://127.0.0.1:8787', `--days=${days}`], fake)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('--days takes a whole number from 1 to 400')
    expect(fake.calls).toEqual([])
  })

  it('says plainly when the Worker has no history route (an older deployment), exit 1', async () => {
    const fake = fakeWorker({ [`/v1/keys/${KEY_ID}/limits`]: { body: LIMITS } })
    const result = await run(['usage', KEY_ID, '--url', 'http://127.0.0.1:8787', '--days', '7'], fake)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('No route. (HTTP 404)')
    const odd = fakeWorker({ [`/v1/keys/${KEY_ID}/limits`]: { body: LIMITS }, [`/v1/keys/${KEY_ID}/usage`]: { body: { object: 'list' } } })
    const wrong = await run(['usage', KEY_ID, '--url', 'http://127.0.0.1:8787', '--days', '7'], odd)
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toContain('did not answer with a key.usage_history object')
  })
})

describe('keys board', () => {
  it('lists the keys nearest their budgets, a row per budget, and the flagged keys', async () => {
    const fake = worker()
    const result = await run(['board', '--url', 'https://gateway.example'], fake)
    expect(result).toMatchObject({ code: 0, stderr: '' })
    expect(fake.calls).toEqual([{ url: 'https://gateway.example/v1/keys/board', authorization: `Bearer ${ADMIN_KEY}` }])
    expect(result.stdout).toContain('Keys nearest their token budgets')
    expect(result.stdout).toMatch(/^KEY\s+PERIOD\s+USED\s+LIMIT\s+USED %\s+RESETS \(UTC\)\s+REPORTED$/m)
    expect(result.stdout).toMatch(new RegExp(`^${KEY_ID}\\s+day\\s+930\\s+1000\\s+93\\.0%\\s+2026-12-08T00:00:00Z\\s+4 s ago$`, 'm'))
    expect(result.stdout).toMatch(new RegExp(`^${KEY_ID}\\s+month\\s+5000\\s+20000\\s+25\\.0%\\s+2027-01-01T00:00:00Z\\s+4 s ago$`, 'm'))
    expect(result.stdout).toMatch(/^KEY\s+LAST HOUR\s+NORMAL\s+TIMES NORMAL\s+REPORTED$/m)
    expect(result.stdout).toMatch(new RegExp(`^${OTHER_ID}\\s+80000\\s+2000\\s+40\\.0x\\s+12 s ago$`, 'm'))
  })

  it('says none for empty lists, prints JSON with --json, and takes no key id', async () => {
    const empty = fakeWorker({ '/v1/keys/board': { body: { object: 'key.board', closest: [], flagged: [] } } })
    const result = await run(['board', '--url', 'http://127.0.0.1:8787'], empty)
    expect(result.code).toBe(0)
    expect(result.stdout.split('\n').filter((line) => line === 'none')).toHaveLength(2)
    const json = await run(['board', '--url', 'http://127.0.0.1:8787', '--json'], worker())
    expect(JSON.parse(json.stdout)).toEqual(BOARD)
    const fake = worker()
    expect((await run(['board', KEY_ID, '--url', 'http://127.0.0.1:8787'], fake)).code).toBe(2)
    expect((await run(['board'], fake)).code).toBe(2)
    expect((await run(['board', '--url', 'http://127.0.0.1:8787'], { ...fake, env: {} })).code).toBe(2)
    expect(fake.calls).toEqual([])
  })

  it('refuses an answer that is not a board, exit 1', async () => {
    const result = await run(['board', '--url', 'http://127.0.0.1:8787'], fakeWorker({ '/v1/keys/board': { body: { object: 'list' } } }))
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('did not answer with a key.board object')
  })
})
