// `npm run fleet` against real local KV: Miniflare opens a fresh --persist-to directory, as wrangler
// dev would, to check what the CLI wrote and to put the cron probe's health snapshot there. A few
// cases run the real thing, scripts/fleet.ts as a process calling wrangler; the rest call
// runFleetCli in this process, with wrangler's kv commands answered from that same namespace
// (each wrangler process costs about 1.5 s).
import { readFile } from 'node:fs/promises'
import { beforeAll, describe, expect, it } from 'vitest'
import { FLEET_KEY, HEALTH_KEY, type FleetRecord, type HealthSnapshot } from '../../src/fleet/records.ts'
import { runFleetCli, type CliDeps } from '../../scripts/fleet/cli.ts'
import { newBackend } from '../../scripts/fleet/options.ts'
import { isPlaceholderTunnelId, reservedDomain } from '../../scripts/fleet/placeholders.ts'
import { kvArgs, type KvEntry, type KvTarget } from '../../scripts/keys/kv.ts'
import { runCliScript, useLocalKv, type LocalKv, type Run } from './cli-support.ts'

const local = useLocalKv('fleet-test-', 'FLEET', 'edge-proxy-fleet-local')

/** scripts/fleet.ts as a process on the test's local state: the CLI and wrangler for real. */
const fleetProcess = (...args: string[]) => runCliScript('scripts/fleet.ts', local.dir, args)

/** runFleetCli with its output collected. */
async function cli(argv: readonly string[], deps: Partial<CliDeps> = {}): Promise<Run> {
  const stdout: string[] = []
  const stderr: string[] = []
  const out = { log: (text: string) => stdout.push(text), error: (text: string) => stderr.push(text) }
  const code = await runFleetCli(argv, { ...deps, out })
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') }
}

/**
 * wrangler's local kv commands (bulk get, bulk put, key list) answered from the Miniflare
 * namespace of `state`, after checking that they name the FLEET binding of the local state: the
 * same storage the process runs write through wrangler.
 */
function localWrangler(state: LocalKv) {
  return async (args: string[]): Promise<string> => {
    expect(args.slice(-5)).toEqual(['--config', expect.stringMatching(/wrangler\.toml$/), '--local', '--persist-to', state.dir])
    expect(args).toEqual(expect.arrayContaining(['--binding', 'FLEET']))
    const [, group, verb, file] = args
    if (group === 'bulk' && verb === 'get') {
      const keys = JSON.parse(await readFile(file ?? '', 'utf8')) as string[]
      const values = await Promise.all(keys.map(async (key) => [key, await state.kv.get(key)] as const))
      // As local wrangler prints it: {key: {value}}, null for a missing key.
      return JSON.stringify(Object.fromEntries(values.map(([key, value]) => [key, value === null ? null : { value }])))
    }
    if (group === 'bulk' && verb === 'put') {
      for (const { key, value } of JSON.parse(await readFile(file ?? '', 'utf8')) as { key: string; value: string }[]) {
        await state.kv.put(key, value)
      }
      return 'Success!'
    }
    throw new Error(`unexpected wrangler call: ${args.join(' ')}`)
  }
}

/** The CLI in this process on the test's local state. */
const fleet = (...args: string[]) => cli([...args, '--persist-to', local.dir], { run: localWrangler(local) })

async function stored(): Promise<FleetRecord | null> {
  return JSON.parse((await local.kv.get(FLEET_KEY)) ?? 'null') as FleetRecord | null
}

const GPU_A = { id: 'gpu-a', url: 'http://10.0.0.5:8000', weight: 1, maxConcurrency: 256, region: 'eu-west', state: 'active' }
const GPU_B = {
  id: 'gpu-b',
  url: 'https://gpu-b.internal:8443/vllm',
  weight: 2.5,
  maxConcurrency: 128,
  region: null,
  state: 'active',
  accessSecret: 'TUNNEL_B',
}
const PICK_UP = /FLEET_CACHE_TTL_MS \(10 s by default\); no deploy is needed\./

describe('fleet add, list, drain, undrain and remove', () => {
  it('list says when there is no record, and that the Worker then uses BACKEND_URLS', async () => {
    const run = await fleetProcess('list')
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toContain('No fleet record in the local FLEET namespace: the Worker uses BACKEND_URLS from wrangler.toml.')
  })

  it('exits 1 for an id when there is no record, saying so, and writes nothing', async () => {
    const run = await fleet('drain', 'gpu-a')
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain('No backend with id gpu-a in the local FLEET namespace. It has no fleet record')
    expect(await stored()).toBeNull()
  })

  it('add makes the record with the defaults and a normalized URL, and says that it replaces BACKEND_URLS', async () => {
    const before = Date.now()
    // The process and wrangler for real: what wrangler writes is what the Worker's namespace reads.
    const run = await fleetProcess('add', 'gpu-a', '--url', 'http://10.0.0.5:8000/', '--region', 'eu-west')
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toContain(
      'Added to the local FLEET namespace: gpu-a: http://10.0.0.5:8000, weight 1, max concurrency 256, region eu-west, active.',
    )
    expect(run.stdout).toMatch(/no fleet record, so this made one: .*instead of BACKEND_URLS/)
    expect(run.stdout).toMatch(PICK_UP)
    const record = await stored()
    expect(record).toMatchObject({ version: 1, backends: [GPU_A] })
    expect(record?.updated).toBeGreaterThanOrEqual(before)
    expect(record?.updated).toBeLessThanOrEqual(Date.now())
  })

  it('add appends to the record and keeps the backends it has', async () => {
    const previous = await stored()
    const args = ['--weight', '2.5', '--max-concurrency', '128', '--access-secret', 'TUNNEL_B']
    const run = await fleet('add', 'gpu-b', '--url', 'https://gpu-b.internal:8443/vllm', ...args)
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toContain(', active, Access token TUNNEL_B.')
    expect(run.stdout).not.toContain('made one')
    const record = await stored()
    expect(record?.backends).toEqual([GPU_A, GPU_B])
    expect(record?.updated).toBeGreaterThanOrEqual(previous?.updated ?? Infinity)
  })

  it.each([
    [['gpu-a', '--url', 'http://10.0.0.9:8000'], 'already has a backend with id gpu-a (http://10.0.0.5:8000)'],
    [['gpu-c', '--url', 'https://gpu-b.internal:8443/vllm//'], 'already has https://gpu-b.internal:8443/vllm, as backend gpu-b'],
  ])('add %j exits 1 for a duplicate and writes nothing', async (args, message) => {
    const before = await local.kv.get(FLEET_KEY)
    const run = await fleet('add', ...args)
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain(message)
    expect(await local.kv.get(FLEET_KEY)).toBe(before)
  })

  it('a bad value exits 2 with usage from the real entry point, and writes nothing', async () => {
    const before = await local.kv.get(FLEET_KEY)
    const run = await fleetProcess('add', 'gpu-c', '--url', 'http://10.0.0.7:8000', '--weight', '0')
    expect(run).toMatchObject({ code: 2, stdout: '' })
    expect(run.stderr).toContain('--weight takes a number above 0 and at most 1000, got: 0')
    expect(run.stderr).toContain('Usage: npm run fleet')
    expect(await local.kv.get(FLEET_KEY)).toBe(before)
  })

  it('drain sets the state, changes nothing else, and says when Workers see it', async () => {
    const previous = await stored()
    const run = await fleet('drain', 'gpu-b')
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toMatch(/^gpu-b is now draining/m)
    expect(run.stdout).toMatch(PICK_UP)
    const record = await stored()
    expect(record?.backends).toEqual([GPU_A, { ...GPU_B, state: 'draining' }])
    expect(record?.updated).toBeGreaterThan(previous?.updated ?? Infinity)
  })

  it('drain of a draining backend writes nothing', async () => {
    const before = await local.kv.get(FLEET_KEY)
    const run = await fleet('drain', 'gpu-b')
    expect(run.code).toBe(0)
    expect(run.stdout).toContain('gpu-b was already draining; nothing changed.')
    expect(await local.kv.get(FLEET_KEY)).toBe(before)
  })

  describe('with a health snapshot from the cron probe', () => {
    const at = Date.now() - 5_000
    const snapshot: HealthSnapshot = {
      at,
      backends: {
        'gpu-a': { healthy: true, checkedAt: at, running: 3, waiting: 1, kvCacheUsage: 0.42, problem: null },
        'gpu-b': { healthy: false, checkedAt: at, running: null, waiting: null, kvCacheUsage: null, problem: 'timeout' },
        gone: { healthy: true, checkedAt: at, running: 0, waiting: 0, kvCacheUsage: 0, problem: null },
      },
    }
    beforeAll(async () => {
      await local.kv.put(HEALTH_KEY, JSON.stringify(snapshot))
    })

    it('list joins each backend with its health, the age of the probe and its load', async () => {
      const run = await fleet('list')
      expect(run).toMatchObject({ code: 0, stderr: '' })
      expect(run.stdout).toMatch(/^Fleet record in the local FLEET namespace, updated \S+Z \(\d+ s ago\): 2 backends, 1 draining\.$/m)
      expect(run.stdout).toMatch(/^ID\s+URL\s+WEIGHT\s+MAX CONC\s+REGION\s+STATE\s+ACCESS\s+HEALTH\s+CHECKED\s+RUNNING\s+WAITING$/m)
      expect(run.stdout).toMatch(/^gpu-a\s+http:\/\/10\.0\.0\.5:8000\s+1\s+256\s+eu-west\s+active\s+-\s+healthy\s+\d+ s ago\s+3\s+1$/m)
      expect(run.stdout).toMatch(
        /^gpu-b\s+https:\/\/gpu-b\.internal:8443\/vllm\s+2\.5\s+128\s+-\s+draining\s+TUNNEL_B\s+unhealthy\s+\d+ s ago\s+-\s+-$/m,
      )
      expect(run.stdout).toMatch(/^ {2}gpu-b: timeout$/m)
      expect(run.stdout).toMatch(/^Health: the cron probe of \S+Z \(\d+ s ago\)\.$/m)
      expect(run.stdout).not.toContain('gone')
    })

    it("list --json gives the record's fields with each backend's health joined in", async () => {
      const run = await fleet('list', '--json')
      expect(run.code).toBe(0)
      expect(JSON.parse(run.stdout)).toEqual({
        record: true,
        updated: (await stored())?.updated,
        healthAt: at,
        backends: [
          { ...GPU_A, health: snapshot.backends['gpu-a'] },
          { ...GPU_B, state: 'draining', health: snapshot.backends['gpu-b'] },
        ],
      })
    })

    it('a backend the probe has not seen yet is unknown', async () => {
      expect((await fleet('add', 'gpu-c', '--url', 'http://10.0.0.7:8000')).code).toBe(0)
      const run = await fleet('list')
      expect(run.stdout).toMatch(/^gpu-c\s+http:\/\/10\.0\.0\.7:8000\s+1\s+256\s+-\s+active\s+-\s+unknown\s+-\s+-\s+-$/m)
    })
  })

  it('undrain makes the backend active again', async () => {
    const run = await fleet('undrain', 'gpu-b')
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toMatch(/^gpu-b is now active/m)
    expect(run.stdout).toMatch(PICK_UP)
    expect((await stored())?.backends[1]).toEqual(GPU_B)
  })

  it('remove takes the backend out and keeps the others in order', async () => {
    const run = await fleet('remove', 'gpu-a')
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toContain('Removed gpu-a (http://10.0.0.5:8000) from the local FLEET namespace; 2 left.')
    expect(run.stdout).toMatch(PICK_UP)
    expect((await stored())?.backends.map(({ id }) => id)).toEqual(['gpu-b', 'gpu-c'])
  })

  it.each([['remove'], ['drain'], ['undrain']])('%s exits 1 for an unknown id and writes nothing', async (command) => {
    const before = await local.kv.get(FLEET_KEY)
    const run = await fleet(command, 'gpu-a')
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr.trim()).toBe('No backend with id gpu-a in the local FLEET namespace.')
    expect(await local.kv.get(FLEET_KEY)).toBe(before)
  })

  it('refuses a damaged record rather than overwriting it', async () => {
    await local.kv.put(FLEET_KEY, '{"version":2}')
    const run = await fleet('add', 'gpu-d', '--url', 'http://10.0.0.8:8000')
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain('is not a valid fleet record')
    expect(await local.kv.get(FLEET_KEY)).toBe('{"version":2}')
  })
})

describe('fleet command line', () => {
  /** Fails the test if a command reaches KV. */
  const noKv = async (): Promise<string> => {
    throw new Error('KV must not be touched')
  }

  it.each([
    [[]],
    [['frobnicate']],
    [['list', 'extra']],
    [['list', '--url', 'http://10.0.0.5:8000']],
    [['add']],
    [['add', 'gpu-a']],
    [['add', 'gpu-a', 'gpu-b', '--url', 'http://10.0.0.5:8000']],
    [['add', 'GPU A', '--url', 'http://10.0.0.5:8000']],
    [['add', 'gpu-a', '--url', 'ftp://10.0.0.5']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000/v1']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000?x=1']],
    [['add', 'gpu-a', '--url', 'not a url']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--weight', '0']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--weight', '1001']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--weight', '-1']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--weight', '1e2']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--max-concurrency', '1.5']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--max-concurrency', '0']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--max-concurrency', '']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--region', ' ']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--region', 'x'.repeat(65)]],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--region', 'eu\u001b[2J']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--json']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--reasoning-parser', 'qwen3']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--access-secret', 'gpu-b']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--access-secret', '']],
    [['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--access-secret', 'X'.repeat(33)]],
    [['remove']],
    [['drain', 'gpu-a', '--weight', '2']],
    [['undrain', 'gpu-a', 'gpu-b']],
    [['list', '--remote', '--persist-to', 'state']],
    [['list', '--env']],
    [['list', '--env', '']],
    [['list', '--env', 'prod uction']],
    [['list', '--env', '--remote']],
  ])('rejects %j with usage on stderr and exit 2, before touching KV', async (argv) => {
    const errors: string[] = []
    const code = await runFleetCli(argv, { run: noKv, out: { log: noKv, error: (text) => errors.push(text) } })
    expect(code).toBe(2)
    expect(errors.join('\n')).toContain('Usage: npm run fleet')
  })

  it('names what is wrong with each bad value', async () => {
    const errors: string[] = []
    const out = { log: noKv, error: (text: string) => errors.push(text) }
    await runFleetCli(['add', 'GPU', '--url', 'http://10.0.0.5:8000', '--max-concurrency', '1.5'], { run: noKv, out })
    expect(errors.join('\n')).toMatch(
      /^ID must be 1 to 63 lowercase letters.*, got: GPU\n--max-concurrency takes a whole number from 1 to 100000, got: 1\.5$/m,
    )
  })

  it('records a backend that runs without a reasoning parser, so the Worker splits its reasoning itself', () => {
    expect(
      newBackend('gpu-a', {
        url: 'http://10.0.0.5:8000',
        weight: undefined,
        'max-concurrency': undefined,
        region: undefined,
        'reasoning-parser': 'none',
      }),
    ).toMatchObject({
      reasoningParser: 'none',
    })
  })

  it("records the name of the backend's Cloudflare Access secret pair, and says which secrets it means when the name is bad", async () => {
    const values = { url: 'http://10.0.0.5:8000', weight: undefined, 'max-concurrency': undefined, region: undefined }
    expect(newBackend('gpu-a', { ...values, 'access-secret': 'TUNNEL_B' })).toMatchObject({ accessSecret: 'TUNNEL_B' })
    expect(newBackend('gpu-a', values).accessSecret).toBeUndefined()
    const errors: string[] = []
    await runFleetCli(['add', 'gpu-a', '--url', 'http://10.0.0.5:8000', '--access-secret', 'tunnel-b'], {
      run: noKv,
      out: { log: noKv, error: (text) => errors.push(text) },
    })
    expect(errors.join('\n')).toContain(
      '--access-secret takes a NAME of 1 to 32 of A-Z, 0-9 and "_" (the Worker secrets ACCESS_CLIENT_ID_NAME',
    )
  })

  it('prints usage and exits 0 for --help', async () => {
    const lines: string[] = []
    expect(await runFleetCli(['--help'], { run: noKv, out: { log: (text) => lines.push(text), error: noKv } })).toBe(0)
    expect(lines.join('\n')).toContain('Usage: npm run fleet')
  })
})

describe('fleet record with no backend', () => {
  /** wrangler's kv bulk commands on a Map, for the transitions that would take many processes. */
  function memoryWrangler(store = new Map<string, string>()) {
    const run = async (args: string[]): Promise<string> => {
      const data: unknown = JSON.parse(await readFile(args[3] ?? '', 'utf8'))
      if (args[2] === 'get') return JSON.stringify(Object.fromEntries((data as string[]).map((key) => [key, store.get(key) ?? null])))
      for (const { key, value } of data as { key: string; value: string }[]) store.set(key, value)
      return 'Success!'
    }
    return { store, run }
  }

  it('remove of the last backend keeps an empty record, and says the Worker goes back to BACKEND_URLS', async () => {
    const { store, run } = memoryWrangler()
    expect((await cli(['add', 'gpu-a', '--url', 'http://10.0.0.5:8000'], { run })).code).toBe(0)
    const removed = await cli(['remove', 'gpu-a'], { run })
    expect(removed).toMatchObject({ code: 0, stderr: '' })
    expect(removed.stdout).toContain('now lists no backend, so the Worker uses BACKEND_URLS from wrangler.toml again')
    expect(JSON.parse(store.get(FLEET_KEY) ?? 'null')).toMatchObject({ version: 1, backends: [] })

    const list = await cli(['list'], { run })
    expect(list.stdout).toMatch(/0 backends, 0 draining\.\nThe record lists no backend, so the Worker uses BACKEND_URLS/)

    const added = await cli(['add', 'gpu-b', '--url', 'http://10.0.0.6:8000'], { run })
    expect(added.stdout).toContain(
      'The fleet record listed no backend until now: Workers now route to the backends it lists (1 so far) instead of BACKEND_URLS.',
    )
  })
})

describe('fleet --remote', () => {
  const config = '/project/wrangler.toml'
  const remote: KvTarget = { remote: true, persistTo: undefined, config, binding: 'FLEET' }
  const local: KvTarget = { remote: false, persistTo: '/state', config, binding: 'FLEET' }

  it('passes the FLEET binding, and --remote changes only the location flag', () => {
    const operation = ['bulk', 'get', '/tmp/keys.json']
    expect(kvArgs(remote, operation)).toEqual(['kv', 'bulk', 'get', '/tmp/keys.json', '--binding', 'FLEET', '--config', config, '--remote'])
    expect(kvArgs(local, operation)).toEqual([
      ...kvArgs(remote, operation).filter((arg) => arg !== '--remote'),
      '--local',
      '--persist-to',
      '/state',
    ])
    expect(kvArgs({ remote: true, persistTo: undefined, config }, operation)).toContain('KEYS')
  })

  it('sends every wrangler call of a command to the remote FLEET namespace, and writes the whole record', async () => {
    const calls: string[][] = []
    const written: unknown[] = []
    const fakeWrangler = async (args: string[]): Promise<string> => {
      calls.push(args)
      if (args[1] === 'bulk' && args[2] === 'put') written.push(JSON.parse(await readFile(args[3] ?? '', 'utf8')))
      return args[1] === 'bulk' && args[2] === 'get' ? '{}' : 'Success!'
    }
    const lines: string[] = []
    const out = { log: (text: string) => lines.push(text), error: () => {} }
    const now = () => 1_700_000_000_000
    expect(await runFleetCli(['add', 'gpu-a', '--url', 'https://gpu-a.internal', '--remote'], { run: fakeWrangler, out, now })).toBe(0)
    expect(await runFleetCli(['drain', 'gpu-z', '--remote'], { run: fakeWrangler, out, now })).toBe(1)
    expect(calls.length).toBe(3)
    for (const args of calls) {
      expect(args).toEqual(expect.arrayContaining(['--binding', 'FLEET', '--remote']))
      expect(args).not.toContain('--local')
      expect(args).not.toContain('--persist-to')
    }
    const backend = { id: 'gpu-a', url: 'https://gpu-a.internal', weight: 1, maxConcurrency: 256, region: null, state: 'active' }
    expect(written).toEqual([[{ key: FLEET_KEY, value: JSON.stringify({ version: 1, updated: now(), backends: [backend] }) }]])
    expect(lines.join('\n')).toContain('KV itself can take up to about 60 s more to reach every location.')
  })
})

describe('fleet --env', () => {
  it("gives every wrangler call --env NAME, so the FLEET binding is that environment's, and says which namespace it changed", async () => {
    const calls: string[][] = []
    const store = new Map<string, string>()
    const run = async (args: string[]): Promise<string> => {
      calls.push(args)
      if (args[2] === 'put')
        for (const { key, value } of JSON.parse(await readFile(args[3] ?? '', 'utf8')) as KvEntry[]) store.set(key, value)
      return args[2] === 'get' ? JSON.stringify({ [FLEET_KEY]: store.get(FLEET_KEY) ?? null }) : 'Success!'
    }
    const added = await cli(['add', 'gpu-a', '--url', 'https://gpu-a.internal', '--env', 'production', '--remote'], { run })
    expect(added).toMatchObject({ code: 0, stderr: '' })
    expect(added.stdout).toContain('Added to the remote FLEET namespace of the production environment: gpu-a: https://gpu-a.internal')
    const listed = await cli(['list', '--env', 'production', '--remote'], { run })
    expect(listed.stdout).toMatch(/^Fleet record in the remote FLEET namespace of the production environment, updated /m)
    expect(calls.length).toBe(3)
    for (const args of calls) {
      expect(args[args.indexOf('--env') + 1]).toBe('production')
      expect(args.filter((arg) => arg === '--env')).toHaveLength(1)
      expect(args).toEqual(expect.arrayContaining(['--binding', 'FLEET', '--remote']))
    }
  })

  it("says that without a record the environment's own BACKEND_URLS apply, empty in production", async () => {
    const run = await cli(['list', '--env', 'production', '--remote'], { run: async () => '{}' })
    expect(run.stdout).toBe(
      "No fleet record in the remote FLEET namespace of the production environment: the Worker uses BACKEND_URLS of wrangler.toml's [env.production] (empty in production: requests get 503 no_backend_available).\nnpm run fleet -- add ID --url URL --env production makes one.",
    )
  })

  it('without --env, calls wrangler with no --env: the top-level binding, which npm start and the tests use', async () => {
    const calls: string[][] = []
    const run = async (args: string[]): Promise<string> => {
      calls.push(args)
      return '{}'
    }
    expect((await cli(['list', '--remote'], { run })).code).toBe(0)
    expect(calls[0]).not.toContain('--env')
  })
})

describe('fleet placeholders', () => {
  it.each([
    'https://vllm-0.gpu-host.example.com',
    'https://example.com',
    'http://gpu.example.net:8000',
    'https://EXAMPLE.ORG',
    'https://gpu-a.example',
    'https://gpu-a.invalid',
    'http://gpu-a.test:8000/vllm',
    'https://vllm-0.gpu-host.example.com./',
  ])('add refuses %s, a name reserved for examples and tests, with exit 1, and writes nothing', async (url) => {
    const before = await local.kv.get(FLEET_KEY)
    const run = await fleet('add', 'gpu-z', '--url', url)
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toMatch(
      /^Refusing --url \S+: \S+ \((example\.(com|net|org)|\.example|\.invalid|\.test)\) is under names reserved for examples and tests \(RFC 2606, RFC 6761\)/,
    )
    expect(run.stderr).toContain("Give the backend's own address")
    expect(run.stderr.split('\n')).toHaveLength(1)
    expect(await local.kv.get(FLEET_KEY)).toBe(before)
  })

  it('add refuses before reading KV', async () => {
    const run = await cli(['add', 'gpu-z', '--url', 'https://gpu.example.com', '--remote', '--env', 'production'], {
      run: () => Promise.reject(new Error('KV must not be touched')),
    })
    expect(run.code).toBe(1)
    expect(run.stderr).toContain('Refusing --url https://gpu.example.com')
  })

  it.each([
    ['example.com', 'example.com'],
    ['a.b.example.net', 'example.net'],
    ['x.test', '.test'],
    ['test', '.test'],
    ['notexample.com', null],
    ['example.com.evil.net', null],
    ['example.community', null],
    ['gpu.testing', null],
    ['gpu.internal', null],
    ['10.0.0.5', null],
  ])('reservedDomain(%s) is %s', (hostname, domain) => {
    expect(reservedDomain(hostname)).toBe(domain)
  })

  it.each([
    ['00000000-0000-0000-0000-000000000000', true],
    ['0', true],
    ['', true],
    [undefined, true],
    ['6ff42ae2-765d-4adf-8112-31c55c1551ef', false],
    ['gpu-host-a', false],
  ])('tunnel id %j is a placeholder: %s', (id, placeholder) => {
    expect(isPlaceholderTunnelId(id)).toBe(placeholder)
  })
})
