// `npm run keys` against real local KV: a fresh --persist-to directory that Miniflare opens to check
// what was written, exactly as wrangler dev would. Most commands run in-process (runKeysCli) with
// wrangler's kv commands answered from that Miniflare (kv-stand-in.ts); a few run as the real CLI
// process through wrangler itself, and one test checks the stand-in prints what wrangler does.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { newKeyRecord } from '../../src/auth/key-record.ts'
import { ensureDevKey, withDevKey } from '../../scripts/keys/dev-key.ts'
import { runKeysCli, type CliDeps } from '../../scripts/keys/cli.ts'
import { kvArgs, runWrangler, wranglerKv, type KvTarget } from '../../scripts/keys/kv.ts'
import { parseExpiry, USAGE_HINT } from '../../scripts/keys/options.ts'
import { ROOT } from '../../scripts/processes.ts'
import { runCliScript, useLocalKv, type Run } from './cli-support.ts'
import { kvStandIn } from './kv-stand-in.ts'

const local = useLocalKv('keys-test-', 'KEYS', 'edge-proxy-keys-local')

/** scripts/keys.ts as a process on the test's local state, through wrangler. */
const keysProcess = (...args: string[]) => runCliScript('scripts/keys.ts', local.dir, args)

/** The CLI in-process on the test's local state; stdout and stderr as the process would print them. */
async function keys(...args: string[]): Promise<Run> {
  const stdout: string[] = []
  const stderr: string[] = []
  const out = { log: (text: string) => stdout.push(`${text}\n`), error: (text: string) => stderr.push(`${text}\n`) }
  const code = await runKeysCli([...args, '--persist-to', local.dir], { run: kvStandIn(local), out, env: {} })
  return { code, stdout: stdout.join(''), stderr: stderr.join('') }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
const DAY = 86_400

describe('keys create, list, show and revoke', () => {
  let secret = ''
  let id = ''
  let createdAt = 0

  it('create prints the secret once, with a warning to store it, and the record', async () => {
    createdAt = Math.floor(Date.now() / 1000)
    const run = await keysProcess(
      'create',
      '--name',
      'test app',
      '--scopes',
      'chat,admin',
      '--expires',
      '30d',
      '--origins',
      'https://a.example,https://b.example',
      '--rpm',
      '60',
      '--max-output',
      '512',
    )
    expect(run).toMatchObject({ code: 0, stderr: '' })
    secret = /sk-[\w-]{43}/.exec(run.stdout)?.[0] ?? ''
    id = /key_[0-9a-f]{16}/.exec(run.stdout)?.[0] ?? ''
    expect(secret).not.toBe('')
    expect(run.stdout.split(secret)).toHaveLength(2)
    expect(run.stdout).toMatch(/shown once: store it now/)
    expect(run.stdout).toMatch(/name\s+test app/)
    expect(run.stdout).toMatch(/scopes\s+chat,admin/)
    expect(run.stdout).toMatch(/requests\/min 60, max output tokens 512/)
    expect(run.stdout).toContain('https://a.example, https://b.example')
  })

  it('stores the record under the SHA-256 of the secret and the id index, never the secret', async () => {
    const hash = sha256(secret)
    const record = JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')
    expect(record).toMatchObject({
      id,
      name: 'test app',
      scopes: ['chat', 'admin'],
      disabled: false,
      origins: ['https://a.example', 'https://b.example'],
    })
    expect(record.limits).toEqual({ requestsPerMinute: 60, tokensPerMinute: null, concurrentStreams: null, maxOutputTokens: 512 })
    expect(record.expires - record.created).toBe(30 * DAY)
    expect(await local.kv.get(`keyid:${id}`)).toBe(hash)

    const { keys: names } = await local.kv.list()
    const values = await Promise.all(names.map(({ name }) => local.kv.get(name)))
    expect([...names.map(({ name }) => name), ...values].join('\n')).not.toContain(secret)
  })

  it('list shows the key as active with its expiry, without secret or hash', async () => {
    const run = await keys('list')
    expect(run.code).toBe(0)
    const line = run.stdout.split('\n').find((text) => text.startsWith(id)) ?? ''
    expect(line).toMatch(/test app\s+chat,admin\s+active\s+\d{4}-\d{2}-\d{2}T/)
    expect(new Date(/\S+$/.exec(line)?.[0] ?? '').getTime() / 1000 - createdAt).toBeGreaterThanOrEqual(30 * DAY)
    expect(run.stdout).not.toContain(secret)
    expect(run.stdout).not.toContain(sha256(secret))
  })

  it('show finds the key by id, without secret or hash', async () => {
    const run = await keys('show', id, '--json')
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout)).toMatchObject({ id, name: 'test app', disabled: false })
    expect(run.stdout).not.toContain(secret)
    expect(run.stdout).not.toContain(sha256(secret))
  })

  it('revoke disables the key, keeps its record, and tells how long caches may still accept it', async () => {
    const revoke = await keys('revoke', id)
    expect(revoke.code).toBe(0)
    expect(revoke.stdout).toMatch(/KEY_CACHE_TTL_MS \(60 s by default\)/)
    const show = await keys('show', id)
    expect(show.stdout).toMatch(/status\s+disabled/)
    expect(JSON.parse((await local.kv.get(`key:${sha256(secret)}`)) ?? 'null')).toMatchObject({ id, name: 'test app', disabled: true })
  })

  it('lists a key past its expiry as expired', async () => {
    const record = newKeyRecord({ name: 'old', expires: Math.floor(Date.now() / 1000) - 60 })
    await local.kv.put(`key:${'0'.repeat(64)}`, JSON.stringify(record))
    const run = await keys('list')
    expect(run.stdout).toMatch(new RegExp(`^${record.id}\\s+old\\s+chat\\s+expired\\s`, 'm'))
    expect(run.stdout).toMatch(new RegExp(`^${id}\\s+test app\\s+chat,admin\\s+disabled\\s`, 'm'))
  })

  it('has an in-process stand-in for wrangler that prints what wrangler prints for local state', async () => {
    const target: KvTarget = { remote: false, persistTo: local.dir, config: join(ROOT, 'wrangler.toml') }
    const file = join(local.dir, 'bulk-get.json')
    await writeFile(file, JSON.stringify([`keyid:${id}`, 'keyid:key_0000000000000000']))
    for (const operation of [
      ['bulk', 'get', file],
      ['key', 'list', '--prefix', 'key'],
    ]) {
      const args = kvArgs(target, operation)
      const [real, standIn] = await Promise.all([runWrangler(args), kvStandIn(local)(args)])
      // wrangler may print a notice line before the JSON; the CLI skips it.
      expect(standIn.trim()).toBe(real.slice(real.search(/^[[{]/m)).trim())
    }
  })

  it('exits 1 with a clear message for an unknown id', async () => {
    const run = await keys('show', 'key_0000000000000000')
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain('No key with id key_0000000000000000')
  })
})

describe('keys limits', () => {
  let id = ''
  let hash = ''

  it('sets the limits given, keeps the others and the rest of the record, and says when Workers see them', async () => {
    const create = await keys('create', '--name', 'limited', '--rpm', '60', '--max-output', '512')
    id = /key_[0-9a-f]{16}/.exec(create.stdout)?.[0] ?? ''
    hash = sha256(/sk-[\w-]{43}/.exec(create.stdout)?.[0] ?? '')
    const before = JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')

    const run = await keys('limits', id, '--tpm', '1000', '--streams', '2')
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toMatch(/requests\/min\s+60\n\s+tokens\/min\s+1000\n\s+concurrent streams\s+2\n\s+max output tokens\s+512/)
    expect(run.stdout).toMatch(/KEY_CACHE_TTL_MS \(60 s by default\)/)
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).toEqual({
      ...before,
      limits: { requestsPerMinute: 60, tokensPerMinute: 1000, concurrentStreams: 2, maxOutputTokens: 512 },
    })
  })

  it('puts a limit back to the deployment default with the word default', async () => {
    const run = await keys('limits', id, '--rpm', 'default', '--max-output', 'default', '--json')
    expect(run.code).toBe(0)
    const limits = { requestsPerMinute: null, tokensPerMinute: 1000, concurrentStreams: 2, maxOutputTokens: null }
    expect(JSON.parse(run.stdout)).toEqual({ id, limits })
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null').limits).toEqual(limits)
    expect((await keys('show', id)).stdout).toMatch(/limits\s+tokens\/min 1000, concurrent streams 2 \(others: deployment defaults\)/)
  })

  it("turns hedged first tokens off for the key with --hedging off, and back to the deployment's with default", async () => {
    const off = await keys('limits', id, '--hedging', 'off')
    expect(off).toMatchObject({ code: 0, stderr: '' })
    expect(off.stdout).toMatch(/hedging\s+off/)
    const stored = JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')
    expect(stored).toMatchObject({ hedging: false, limits: { tokensPerMinute: 1000, concurrentStreams: 2 } })
    expect((await keys('show', id)).stdout).toMatch(/hedging\s+off/)
    const back = await keys('limits', id, '--hedging', 'default', '--json')
    expect(JSON.parse(back.stdout)).toMatchObject({ id, hedging: 'default' })
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).not.toHaveProperty('hedging')
    expect((await keys('limits', id, '--hedging', 'maybe')).code).toBe(2)
  })

  it('sets the priority class with --priority, shows it, and removes it with default (standard again)', async () => {
    expect((await keys('show', id)).stdout).toMatch(/^priority standard \(default\)$/m)
    const set = await keys('limits', id, '--priority', 'interactive')
    expect(set).toMatchObject({ code: 0, stderr: '' })
    expect(set.stdout).toMatch(/^ {2}priority\s+interactive$/m)
    const stored = JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')
    expect(stored).toMatchObject({ priority: 'interactive', limits: { tokensPerMinute: 1000, concurrentStreams: 2 } })
    expect((await keys('show', id)).stdout).toMatch(/^priority interactive$/m)
    expect(JSON.parse((await keys('show', id, '--json')).stdout)).toMatchObject({ id, priority: 'interactive' })
    const batch = await keys('limits', id, '--priority', 'batch', '--json')
    expect(JSON.parse(batch.stdout)).toEqual({ id, limits: stored.limits, priority: 'batch' })
    expect((await keys('list', '--json')).stdout).toContain('"priority": "batch"')
    const back = await keys('limits', id, '--priority', 'default', '--json')
    expect(JSON.parse(back.stdout)).toMatchObject({ id, priority: 'default' })
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).toEqual({ ...stored, priority: undefined })
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).not.toHaveProperty('priority')
    expect((await keys('show', id)).stdout).toMatch(/^priority standard \(default\)$/m)
  })

  it('refuses a priority that is not a class with exit 2, naming the classes, and writes nothing', async () => {
    const before = await local.kv.get(`key:${hash}`)
    const run = await keys('limits', id, '--priority', 'urgent')
    expect(run).toMatchObject({ code: 2, stdout: '' })
    expect(run.stderr).toContain('--priority takes interactive, standard, batch or default, got: urgent')
    expect(await local.kv.get(`key:${hash}`)).toBe(before)
  })

  it('sets the weight with --weight, shows it, and removes it with default (weight 1 again)', async () => {
    expect((await keys('show', id)).stdout).toMatch(/^weight {3}1 \(default\)$/m)
    const set = await keys('limits', id, '--weight', '2')
    expect(set).toMatchObject({ code: 0, stderr: '' })
    expect(set.stdout).toMatch(/^ {2}weight\s+2$/m)
    const stored = JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')
    expect(stored).toMatchObject({ weight: 2, limits: { tokensPerMinute: 1000, concurrentStreams: 2 } })
    expect((await keys('show', id)).stdout).toMatch(/^weight {3}2$/m)
    expect(JSON.parse((await keys('show', id, '--json')).stdout)).toMatchObject({ id, weight: 2 })
    const fraction = await keys('limits', id, '--weight', '0.5', '--json')
    expect(JSON.parse(fraction.stdout)).toEqual({ id, limits: stored.limits, weight: 0.5 })
    const back = await keys('limits', id, '--weight', 'default', '--json')
    expect(JSON.parse(back.stdout)).toMatchObject({ id, weight: 'default' })
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).toEqual({ ...stored, weight: undefined })
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).not.toHaveProperty('weight')
    expect((await keys('show', id)).stdout).toMatch(/^weight {3}1 \(default\)$/m)
  })

  it('sets the weight and the priority class in one call', async () => {
    const run = await keys('limits', id, '--priority', 'batch', '--weight', '1000')
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toMatch(/^ {2}priority\s+batch\n {2}weight\s+1000$/m)
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).toMatchObject({ priority: 'batch', weight: 1000 })
    const json = await keys('limits', id, '--priority', 'default', '--weight', 'default', '--json')
    expect(JSON.parse(json.stdout)).toMatchObject({ id, priority: 'default', weight: 'default' })
    const stored = JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')
    expect(stored).not.toHaveProperty('priority')
    expect(stored).not.toHaveProperty('weight')
  })

  it.each(['0', '-1', '1001', '1e3', 'heavy', '', 'Infinity', 'NaN', '0x10'])(
    'refuses the weight %j with exit 2, naming the bounds, and writes nothing',
    async (weight) => {
      const before = await local.kv.get(`key:${hash}`)
      const run = await keys('limits', id, `--weight=${weight}`, '--priority', 'interactive')
      expect(run).toMatchObject({ code: 2, stdout: '' })
      expect(run.stderr).toContain(`--weight takes a number greater than 0 and at most 1000, or default, got: ${weight}`)
      expect(await local.kv.get(`key:${hash}`)).toBe(before)
    },
  )

  it('sets token budgets with --budget-day and --budget-month, shows them, and removes one with none or default', async () => {
    const before = JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')
    expect((await keys('show', id)).stdout).toMatch(/^budgets {2}none$/m)
    const set = await keys('limits', id, '--budget-day', '100000', '--budget-month', '2000000')
    expect(set).toMatchObject({ code: 0, stderr: '' })
    expect(set.stdout).toMatch(/^ {2}budget per day\s+100000\n {2}budget per month\s+2000000$/m)
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null')).toEqual({
      ...before,
      limits: { ...before.limits, budgetDay: 100000, budgetMonth: 2000000 },
    })
    expect((await keys('show', id)).stdout).toMatch(/^budgets {2}day 100000 tokens, month 2000000 tokens$/m)
    const none = await keys('limits', id, '--budget-day', 'none', '--json')
    expect(JSON.parse(none.stdout)).toMatchObject({ id, limits: { budgetDay: null, budgetMonth: 2000000 } })
    expect((await keys('show', id)).stdout).toMatch(/^budgets {2}month 2000000 tokens$/m)
    const back = await keys('limits', id, '--budget-month', 'default')
    expect(back.stdout).toMatch(/^ {2}budget per day\s+none\n {2}budget per month\s+none$/m)
    expect(JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null').limits).toMatchObject({ budgetDay: null, budgetMonth: null })
    expect((await keys('show', id)).stdout).toMatch(/^budgets {2}none$/m)
  })

  it('creates a key with a budget, and refuses a budget that is not a positive whole number with exit 2, writing nothing', async () => {
    const create = await keys('create', '--name', 'budgeted', '--budget-month', '5000000', '--json')
    expect(create.code).toBe(0)
    expect(JSON.parse(create.stdout).record.limits).toEqual({
      requestsPerMinute: null,
      tokensPerMinute: null,
      concurrentStreams: null,
      maxOutputTokens: null,
      budgetMonth: 5000000,
    })
    const before = await local.kv.get(`key:${hash}`)
    const run = await keys('limits', id, '--budget-day', '0', '--rpm', '5')
    expect(run).toMatchObject({ code: 2, stdout: '' })
    expect(run.stderr).toContain('--budget-day takes a positive whole number of tokens, none or default, got: 0')
    expect(await local.kv.get(`key:${hash}`)).toBe(before)
  })

  it('exits 1 for an unknown id with the message show gives, and writes nothing', async () => {
    const names = (await local.kv.list()).keys.map(({ name }) => name)
    const run = await keys('limits', 'key_0000000000000000', '--rpm', '5')
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr.trim()).toBe((await keys('show', 'key_0000000000000000')).stderr.trim())
    expect((await local.kv.list()).keys.map(({ name }) => name)).toEqual(names)
  })
})

const ADMIN_KEY = `sk-${'A'.repeat(43)}`

describe('keys command line', () => {
  /** Fails the test if a command reaches KV. */
  const noKv = async (): Promise<string> => {
    throw new Error('KV must not be touched')
  }
  /** Fails the test if a command reaches the Worker. */
  const noFetch = async (): Promise<Response> => {
    throw new Error('The Worker must not be asked')
  }

  it.each([
    [[]],
    [['frobnicate']],
    [['create']],
    [['create', '--name', ' ']],
    [['create', '--name', 'x', '--expires', 'tomorrow']],
    [['create', '--name', 'x', '--expires', '2020-01-01T00:00:00Z']],
    [['create', '--name', 'x', '--expires', '2027-02-30']],
    [['create', '--name', 'x', '--expires', '2027-01-01T00:00:00']],
    [['create', '--name', 'x', '--scopes', 'chat,root']],
    [['create', '--name', 'x', '--origins', 'https://a.example/']],
    [['create', '--name', 'x', '--rpm', '0']],
    [['create', '--name', 'x', '--tpm', '1.5']],
    [['list', '--bogus']],
    [['list', '--name', 'x']],
    [['list', 'extra']],
    [['show']],
    [['revoke', '--json', 'key_0000000000000000']],
    [['list', '--remote', '--persist-to', 'state']],
    [['limits', 'key_0000000000000000']],
    [['limits', '--rpm', '5']],
    [['limits', 'key_0000000000000000', '--rpm', '0']],
    [['limits', 'key_0000000000000000', '--tpm', '5', '--streams', 'none']],
    [['limits', 'key_0000000000000000', '--max-output', '1e3']],
    [['limits', 'key_0000000000000000', '--rpm', '5', '--name', 'x']],
    [['limits', 'key_0000000000000000', '--priority', 'high']],
    [['limits', 'key_0000000000000000', '--priority', '0']],
    [['create', '--name', 'x', '--priority', 'batch']],
    [['limits', 'key_0000000000000000', '--weight', '0']],
    [['limits', 'key_0000000000000000', '--weight', '1000.5']],
    [['limits', 'key_0000000000000000', '--weight=-2']],
    [['limits', 'key_0000000000000000', '--weight', 'two', '--priority', 'batch']],
    [['create', '--name', 'x', '--weight', '2']],
    [['create', '--name', 'x', '--rpm', 'default']],
    [['create', '--name', 'x', '--budget-day', 'lots']],
    [['limits', 'key_0000000000000000', '--budget-month', '1.5']],
    [['limits', 'key_0000000000000000', '--budget-day=-1']],
    [['limits', 'key_0000000000000000', '--budget-day', 'unlimited']],
    [['usage', 'key_0000000000000000']],
    [['usage', 'key_0000000000000000', '--url', 'ftp://worker.example']],
    [['usage', 'key_0000000000000000', '--url', 'http://127.0.0.1:8787', '--remote']],
    [['usage', '--url', 'http://127.0.0.1:8787']],
  ])('rejects %j with usage on stderr and exit 2, before touching KV or the Worker', async (argv) => {
    const errors: string[] = []
    const env = { GATEWAY_ADMIN_KEY: ADMIN_KEY }
    const code = await runKeysCli(argv, { run: noKv, fetch: noFetch, env, out: { log: noKv, error: (text) => errors.push(text) } })
    expect(code).toBe(2)
    // The error alone, then one line saying where the usage is: not the error above 40 lines of it.
    const [message, ...rest] = errors.join('\n').split('\n')
    expect(message).toMatch(/\S/)
    expect(message).not.toContain('Usage')
    expect(rest).toEqual([USAGE_HINT])
  })

  it('exits 2 from the real entry point too, with the error first and the --help pointer', async () => {
    const run = await keysProcess('list', '--bogus')
    expect(run).toMatchObject({ code: 2, stdout: '' })
    expect(run.stderr.trimEnd().split('\n')).toEqual([expect.stringContaining("Unknown option '--bogus'"), USAGE_HINT])
  })

  it('prints the whole usage for --help, with or without a command, and exits 0', async () => {
    for (const argv of [['--help'], ['usage', '--help'], ['-h']]) {
      const run = await keys(...argv)
      expect(run).toMatchObject({ code: 0, stderr: '' })
      expect(run.stdout).toMatch(/^Usage: npm run keys -- <command> \[options\]/)
      expect(run.stdout).toContain('usage ID --url URL [--json]')
    }
  })

  it('reads 30d, 12h and ISO 8601 expiries as Unix seconds', () => {
    const now = Date.UTC(2026, 0, 1)
    expect(parseExpiry('30d', now)).toBe(now / 1000 + 30 * DAY)
    expect(parseExpiry('12h', now)).toBe(now / 1000 + 12 * 3600)
    expect(parseExpiry('2027-01-01T00:00:00Z', now)).toBe(Date.UTC(2027, 0, 1) / 1000)
    expect(parseExpiry('2027-01-01T02:00:00+02:00', now)).toBe(Date.UTC(2027, 0, 1) / 1000)
    expect(parseExpiry('2027-01-01', now)).toBe(Date.UTC(2027, 0, 1) / 1000)
  })
})

describe('keys usage', () => {
  const KEY_ID = 'key_3f9c0a1b2c3d4e5f'
  /** The Worker's answer, as src/routes/key-limits.ts gives it. */
  const ANSWER = {
    object: 'key.limits',
    key_id: KEY_ID,
    enforced: true,
    priority: 'interactive',
    weight: 2,
    limits: {
      requests_per_minute: 60,
      tokens_per_minute: 250000,
      concurrent_streams: 8,
      concurrent_streams_per_ip: 4,
      max_output_tokens: null,
    },
    source: { requests_per_minute: 'key', tokens_per_minute: 'default', concurrent_streams: 'default' },
    usage: {
      in_flight: 1,
      requests: { limit: 60, remaining: 57, reset_ms: 41000 },
      tokens: { limit: 250000, remaining: 240000, reset_ms: 41000 },
      totals: {
        admitted: 3,
        refused: { requests: 2, tokens: 0, concurrent_streams: 0, concurrent_streams_per_ip: 0 },
        prompt_tokens: 30,
        completion_tokens: 120,
        expired_leases: 0,
      },
    },
  }

  interface Call {
    url: string
    headers: Headers
  }

  /** A Worker stand-in answering every request with `body` and `status`; records what it was asked. */
  function fakeWorker(body: unknown, status = 200) {
    const calls: Call[] = []
    const fetch: CliDeps['fetch'] = async (url, init) => {
      calls.push({ url, headers: new Headers(init.headers) })
      return Response.json(body, { status })
    }
    return { calls, fetch }
  }

  async function usage(argv: string[], deps: Partial<CliDeps>): Promise<Run> {
    const stdout: string[] = []
    const stderr: string[] = []
    const out = { log: (text: string) => stdout.push(text), error: (text: string) => stderr.push(text) }
    const code = await runKeysCli(['usage', ...argv], { env: { GATEWAY_ADMIN_KEY: ADMIN_KEY }, ...deps, out })
    return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') }
  }

  it('prints each limit with its source, what is used and left of it, and when the window resets', async () => {
    const worker = fakeWorker(ANSWER)
    const run = await usage([KEY_ID, '--url', 'https://gateway.example/'], worker)
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(worker.calls).toHaveLength(1)
    expect(worker.calls[0]?.url).toBe(`https://gateway.example/v1/keys/${KEY_ID}/limits`)
    expect(worker.calls[0]?.headers.get('authorization')).toBe(`Bearer ${ADMIN_KEY}`)
    expect(run.stdout).toMatch(/^LIMIT\s+VALUE\s+SOURCE\s+USED\s+REMAINING\s+RESET$/m)
    expect(run.stdout).toMatch(/^requests\/min\s+60\s+key\s+3\s+57\s+41 s$/m)
    expect(run.stdout).toMatch(/^tokens\/min\s+250000\s+default\s+10000\s+240000\s+41 s$/m)
    expect(run.stdout).toMatch(/^concurrent streams\s+8\s+default\s+1\s+7\s+-$/m)
    expect(run.stdout).toMatch(/^streams per IP\s+4\s+deployment\b/m)
    expect(run.stdout).toMatch(/^max output tokens\s+-\s+default\b/m)
    expect(run.stdout).toMatch(/^priority class: interactive$/m)
    expect(run.stdout).toMatch(/^weight: 2$/m)
    expect(run.stdout).toContain('3 admitted; refused: requests/min 2, tokens/min 0, concurrent streams 0, streams per IP 0')
    expect(run.stdout).toContain('30 prompt and 120 completion tokens; 0 expired leases')
    expect(run.stdout).not.toContain(ADMIN_KEY)
  })

  it('prints the budgets with what is used and left of them and when they reset, or that the key has none', async () => {
    const budgeted = {
      ...ANSWER,
      budgets: { day: { limit: 100000, used: 4200, remaining: 95800, resets_at: Date.UTC(2026, 11, 8) / 1000 }, month: null },
    }
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], fakeWorker(budgeted))
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toMatch(/^budget per day\s+100000\s+key\s+4200\s+95800\s+2026-12-08T00:00:00Z$/m)
    expect(run.stdout).not.toContain('budget per month')
    expect(run.stdout).not.toContain('token budgets: none')
    const none = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], fakeWorker({ ...ANSWER, budgets: { day: null, month: null } }))
    expect(none.stdout).toMatch(/^token budgets: none$/m)
    expect(none.stdout).not.toContain('budget per day')
  })

  it("--json prints the Worker's answer unchanged", async () => {
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787', '--json'], fakeWorker(ANSWER))
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout)).toEqual(ANSWER)
  })

  it('takes the admin key only from GATEWAY_ADMIN_KEY: unset, it exits 2 before asking the Worker', async () => {
    const worker = fakeWorker(ANSWER)
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], { ...worker, env: {} })
    expect(run).toMatchObject({ code: 2, stdout: '' })
    expect(run.stderr.split('\n')).toEqual([expect.stringMatching(/environment variable GATEWAY_ADMIN_KEY/), USAGE_HINT])
    expect(worker.calls).toEqual([])
  })

  it.each([
    [404, `No API key with id '${KEY_ID}'.`],
    [403, "This API key does not have the 'admin' scope."],
  ])('prints the message of an HTTP %i error body and exits 1', async (status, message) => {
    const worker = fakeWorker({ error: { message, type: 'invalid_request_error', param: null, code: null } }, status)
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], worker)
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toBe(`${message} (HTTP ${status})`)
  })

  it('prints the rest of an answer without priority, from a Worker older than the field', async () => {
    const older = Object.fromEntries(Object.entries(ANSWER).filter(([field]) => field !== 'priority' && field !== 'weight'))
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], fakeWorker(older))
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toMatch(/^requests\/min\s+60\s+key\b/m)
    expect(run.stdout).not.toContain('priority')
    expect(run.stdout).not.toContain('weight')
  })

  it('prints the priority class without a weight, from a Worker older than the weight', async () => {
    const older = Object.fromEntries(Object.entries(ANSWER).filter(([field]) => field !== 'weight'))
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], fakeWorker(older))
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toMatch(/^priority class: interactive$/m)
    expect(run.stdout).not.toContain('weight')
  })

  it('exits 1 when the weight in the answer is not a number, rather than printing nonsense', async () => {
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], fakeWorker({ ...ANSWER, weight: 'heavy' }))
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toMatch(/did not answer with a key\.limits object/)
  })

  it('exits 1 when the answer is not a key.limits object, rather than printing nonsense', async () => {
    const run = await usage([KEY_ID, '--url', 'http://127.0.0.1:8787'], fakeWorker({ object: 'list', data: [] }))
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toMatch(/did not answer with a key\.limits object/)
  })

  it('exits 1 with a hint to start the Worker when nothing listens at the URL', async () => {
    const port = await closedPort()
    const run = await usage([KEY_ID, '--url', `http://127.0.0.1:${port}`], {})
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toMatch(/^Could not reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/)
    expect(run.stderr).toContain('Is the Worker running? npm start serves it at http://127.0.0.1:8787')
  })

  it('asks a real HTTP server with the key from the environment, from the real entry point', async () => {
    const seen: { url?: string; authorization?: string; method?: string } = {}
    const server = createServer((request, response) => {
      Object.assign(seen, { url: request.url, authorization: request.headers.authorization, method: request.method })
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ANSWER))
    })
    try {
      const port = await listen(server)
      const run = await new Promise<Run>((resolve) => {
        const env = { ...process.env, GATEWAY_ADMIN_KEY: ADMIN_KEY }
        const args = [join(ROOT, 'scripts/keys.ts'), 'usage', KEY_ID, '--url', `http://127.0.0.1:${port}`, '--json']
        execFile(process.execPath, args, { cwd: ROOT, env }, (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
        )
      })
      expect(run).toMatchObject({ code: 0, stderr: '' })
      expect(JSON.parse(run.stdout)).toEqual(ANSWER)
      expect(seen).toEqual({ url: `/v1/keys/${KEY_ID}/limits`, authorization: `Bearer ${ADMIN_KEY}`, method: 'GET' })
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

/** Starts the server on a free port of 127.0.0.1 and resolves with the port. */
function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port))
  })
}

/** A port nothing listens on: one the system just gave out and that is free again. */
async function closedPort(): Promise<number> {
  const server = createServer()
  const port = await listen(server)
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('keys --remote', () => {
  const local: KvTarget = { remote: false, persistTo: '/state', config: '/project/wrangler.toml' }
  const remote: KvTarget = { remote: true, persistTo: undefined, config: '/project/wrangler.toml' }

  it('changes only the location flag passed to wrangler', () => {
    const operation = ['key', 'list', '--prefix', 'key:']
    expect(kvArgs(local, operation)).toEqual([
      ...kvArgs(remote, operation).filter((arg) => arg !== '--remote'),
      '--local',
      '--persist-to',
      '/state',
    ])
    expect(kvArgs(remote, operation)).toContain('--remote')
    expect(kvArgs(remote, operation)).not.toContain('--local')
  })

  it("names the environment with --env NAME, so the KEYS binding is that environment's (--env production --remote)", async () => {
    const operation = ['key', 'list', '--prefix', 'key:']
    const production = kvArgs({ ...remote, env: 'production' }, operation)
    expect(production.filter((arg) => arg === '--env')).toHaveLength(1)
    expect(production[production.indexOf('--env') + 1]).toBe('production')
    expect(kvArgs(remote, operation)).not.toContain('--env')
    const parsed = await keys('list', '--env', 'prod uction')
    expect(parsed.code).toBe(2)
    expect(parsed.stderr).toContain('--env takes the name of an environment')
  })

  it('sends every wrangler call of a command to the remote namespace', async () => {
    const calls: string[][] = []
    const fakeWrangler = async (args: string[]): Promise<string> => {
      calls.push(args)
      return args[1] === 'bulk' && args[2] === 'get' ? '{}' : 'Success!'
    }
    const out = { log: () => {}, error: () => {} }
    expect(await runKeysCli(['create', '--name', 'x', '--remote'], { run: fakeWrangler, out })).toBe(0)
    expect(await runKeysCli(['revoke', 'key_0000000000000000', '--remote'], { run: fakeWrangler, out })).toBe(1)
    expect(calls.length).toBeGreaterThanOrEqual(2)
    for (const args of calls) {
      expect(args).toContain('--remote')
      expect(args).not.toContain('--local')
      expect(args).not.toContain('--persist-to')
    }
  })
})

describe("npm start's dev key", () => {
  it('is created into .dev.vars, reused while it exists, and replaced once it is gone', async () => {
    const file = join(local.dir, '.dev.vars')
    await writeFile(file, 'BACKEND_API_KEY=bk-test\n')
    const store = wranglerKv({ remote: false, persistTo: local.dir, config: join(ROOT, 'wrangler.toml') }, kvStandIn(local))

    const first = await ensureDevKey(store, file)
    expect(first.created).toBe(true)
    expect(await readFile(file, 'utf8')).toBe(`BACKEND_API_KEY=bk-test\nDEV_API_KEY=${first.secret}\n`)
    expect(JSON.parse((await local.kv.get(`key:${sha256(first.secret)}`)) ?? 'null')).toMatchObject({
      name: 'local dev',
      scopes: ['chat', 'admin'],
    })

    expect(await ensureDevKey(store, file)).toEqual({ ...first, created: false })

    await local.kv.delete(`key:${sha256(first.secret)}`)
    const replaced = await ensureDevKey(store, file)
    expect(replaced.created).toBe(true)
    expect(replaced.secret).not.toBe(first.secret)
    expect(await readFile(file, 'utf8')).toBe(`BACKEND_API_KEY=bk-test\nDEV_API_KEY=${replaced.secret}\n`)
  })

  it('keeps the other .dev.vars lines and their order when it rewrites the key', () => {
    expect(withDevKey('A=1\nDEV_API_KEY=sk-old\nB=2', 'sk-new')).toBe('A=1\nDEV_API_KEY=sk-new\nB=2')
    expect(withDevKey('A=1', 'sk-new')).toBe('A=1\nDEV_API_KEY=sk-new\n')
    expect(withDevKey('', 'sk-new')).toBe('DEV_API_KEY=sk-new\n')
  })
})
