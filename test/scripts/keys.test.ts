// `npm run keys` against real local KV: the CLI runs as a process on a fresh --persist-to directory,
// and Miniflare opens the same directory to check what wrangler wrote, exactly as wrangler dev would.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Miniflare, convertV4MiniflareOptions } from 'miniflare'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newKeyRecord } from '../../src/auth/key-record.ts'
import { ensureDevKey, withDevKey } from '../../scripts/keys/dev-key.ts'
import { runKeysCli } from '../../scripts/keys/cli.ts'
import { kvArgs, wranglerKv, type KvTarget } from '../../scripts/keys/kv.ts'
import { parseExpiry } from '../../scripts/keys/options.ts'
import { ROOT } from '../../scripts/processes.ts'

type KVNamespace = Awaited<ReturnType<Miniflare['getKVNamespace']>>

let dir: string
let miniflare: Miniflare
let kv: KVNamespace

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keys-test-'))
  // Opened before the CLI writes anything: a running wrangler dev must see keys created later.
  miniflare = new Miniflare(
    convertV4MiniflareOptions({
      modules: true,
      script: 'export default { fetch: () => new Response() }',
      resourcePersistencePath: join(dir, 'v3'),
      kvNamespaces: { KEYS: 'edge-proxy-keys-local' },
    }),
  )
  kv = await miniflare.getKVNamespace('KEYS')
})

afterAll(async () => {
  await miniflare?.dispose()
  if (dir) await rm(dir, { recursive: true, force: true })
})

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** scripts/keys.ts as a process on the test's local state. */
function keys(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'scripts/keys.ts'), ...args, '--persist-to', dir], { cwd: ROOT }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
    })
  })
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
const DAY = 86_400

describe('keys create, list, show and revoke', () => {
  let secret = ''
  let id = ''
  let createdAt = 0

  it('create prints the secret once, with a warning to store it, and the record', async () => {
    createdAt = Math.floor(Date.now() / 1000)
    const run = await keys('create', '--name', 'test app', '--scopes', 'chat,admin', '--expires', '30d', '--origins', 'https://a.example,https://b.example', '--rpm', '60', '--max-output', '512')
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
    const record = JSON.parse((await kv.get(`key:${hash}`)) ?? 'null')
    expect(record).toMatchObject({ id, name: 'test app', scopes: ['chat', 'admin'], disabled: false, origins: ['https://a.example', 'https://b.example'] })
    expect(record.limits).toEqual({ requestsPerMinute: 60, tokensPerMinute: null, concurrentStreams: null, maxOutputTokens: 512 })
    expect(record.expires - record.created).toBe(30 * DAY)
    expect(await kv.get(`keyid:${id}`)).toBe(hash)

    const { keys: names } = await kv.list()
    const values = await Promise.all(names.map(({ name }) => kv.get(name)))
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
    expect(JSON.parse((await kv.get(`key:${sha256(secret)}`)) ?? 'null')).toMatchObject({ id, name: 'test app', disabled: true })
  })

  it('lists a key past its expiry as expired', async () => {
    const record = newKeyRecord({ name: 'old', expires: Math.floor(Date.now() / 1000) - 60 })
    await kv.put(`key:${'0'.repeat(64)}`, JSON.stringify(record))
    const run = await keys('list')
    expect(run.stdout).toMatch(new RegExp(`^${record.id}\\s+old\\s+chat\\s+expired\\s`, 'm'))
    expect(run.stdout).toMatch(new RegExp(`^${id}\\s+test app\\s+chat,admin\\s+disabled\\s`, 'm'))
  })

  it('exits 1 with a clear message for an unknown id', async () => {
    const run = await keys('show', 'key_0000000000000000')
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain('No key with id key_0000000000000000')
  })
})

describe('keys command line', () => {
  /** Fails the test if a command reaches KV. */
  const noKv = async (): Promise<string> => {
    throw new Error('KV must not be touched')
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
  ])('rejects %j with usage on stderr and exit 2, before touching KV', async (argv) => {
    const errors: string[] = []
    const code = await runKeysCli(argv, { run: noKv, out: { log: noKv, error: (text) => errors.push(text) } })
    expect(code).toBe(2)
    expect(errors.join('\n')).toContain('Usage: npm run keys')
  })

  it('exits 2 from the real entry point too', async () => {
    const run = await keys('list', '--bogus')
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('Usage: npm run keys')
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

describe('keys --remote', () => {
  const local: KvTarget = { remote: false, persistTo: '/state', config: '/project/wrangler.toml' }
  const remote: KvTarget = { remote: true, persistTo: undefined, config: '/project/wrangler.toml' }

  it('changes only the location flag passed to wrangler', () => {
    const operation = ['key', 'list', '--prefix', 'key:']
    expect(kvArgs(local, operation)).toEqual([...kvArgs(remote, operation).filter((arg) => arg !== '--remote'), '--local', '--persist-to', '/state'])
    expect(kvArgs(remote, operation)).toContain('--remote')
    expect(kvArgs(remote, operation)).not.toContain('--local')
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
    const file = join(dir, '.dev.vars')
    await writeFile(file, 'BACKEND_API_KEY=bk-test\n')
    const store = wranglerKv({ remote: false, persistTo: dir, config: join(ROOT, 'wrangler.toml') })

    const first = await ensureDevKey(store, file)
    expect(first.created).toBe(true)
    expect(await readFile(file, 'utf8')).toBe(`BACKEND_API_KEY=bk-test\nDEV_API_KEY=${first.secret}\n`)
    expect(JSON.parse((await kv.get(`key:${sha256(first.secret)}`)) ?? 'null')).toMatchObject({ name: 'local dev', scopes: ['chat', 'admin'] })

    expect(await ensureDevKey(store, file)).toEqual({ ...first, created: false })

    await kv.delete(`key:${sha256(first.secret)}`)
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
