// `npm run keys -- revoke ID [--url URL]` against the built Worker served by workerd (with its own
// KV and Durable Objects) and a vLLM emulator: the key stops at once, though the Worker had cached
// it; without --url the CLI finds the Worker (GATEWAY_URL, wrangler.toml's PUBLIC_ORIGINS), and
// when it cannot reach it, it writes KV itself and says how long the key stays usable.
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runKeysCli } from '../../scripts/keys/cli.ts'
import { freePort } from '../../scripts/processes.ts'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'
import { newKeyRecord, type KeyRecord } from '../../src/auth/key-record.ts'
import { useLocalKv } from './cli-support.ts'
import { kvStandIn } from './kv-stand-in.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'revoke-test-backend-key'
const CHAT_KEY = `sk-${'c'.repeat(43)}`
const ADMIN_KEY = `sk-${'a'.repeat(43)}`
const KEY_ID = 'key_00000000000000c1'
const FOUND_KEYS = { GATEWAY_URL: `sk-${'d'.repeat(43)}`, PUBLIC_ORIGINS: `sk-${'e'.repeat(43)}` }
const FOUND_IDS = { GATEWAY_URL: 'key_00000000000000d1', PUBLIC_ORIGINS: 'key_00000000000000e1' }
const local = useLocalKv('keys-revoke-', 'KEYS', 'edge-proxy-keys-local')

let emulator: RunningEmulator
let worker: ServedWorker

beforeAll(async () => {
  const [script, started] = await Promise.all([
    buildPrivateWorker(),
    spawnEmulator(['--served-model-name', MODEL, '--api-key', BACKEND_KEY, '--ttft-ms', '5', '--itl-ms', '1']),
  ])
  emulator = started
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY },
    {
      keys: [
        { secret: CHAT_KEY, fields: { id: KEY_ID } },
        { secret: FOUND_KEYS.GATEWAY_URL, fields: { id: FOUND_IDS.GATEWAY_URL } },
        { secret: FOUND_KEYS.PUBLIC_ORIGINS, fields: { id: FOUND_IDS.PUBLIC_ORIGINS } },
        { secret: ADMIN_KEY, fields: { scopes: ['admin'] } },
      ],
    },
  )
})

afterAll(async () => {
  await worker?.dispose()
  await emulator?.stop()
})

function chat(secret = CHAT_KEY): Promise<Response> {
  return fetch(`${worker.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: '[emulator reasoning_tokens=2 content_tokens=2] hi' }] }),
  })
}

function capture() {
  const lines: string[] = []
  const errors: string[] = []
  return {
    lines,
    errors,
    out: {
      log: (line: string) => lines.push(line),
      error: (line: string) => {
        lines.push(line)
        errors.push(line)
      },
    },
  }
}

/** A wrangler runner that must not be called: the fast path writes no KV itself. */
function noWrangler(calls: string[][]) {
  return async (args: string[]): Promise<string> => {
    calls.push(args)
    throw new Error('wrangler should not run on the fast path')
  }
}

/** A key in the test's local state only (not in the served Worker's KV). */
async function localKey(name: string): Promise<KeyRecord> {
  const record = newKeyRecord({ name })
  const hash = createHash('sha256').update(`sk-${name}`).digest('hex')
  await local.kv.put(`key:${hash}`, JSON.stringify(record))
  await local.kv.put(`keyid:${record.id}`, hash)
  return record
}

async function localRecord(id: string): Promise<KeyRecord | null> {
  const hash = await local.kv.get(`keyid:${id}`)
  return hash ? JSON.parse((await local.kv.get(`key:${hash}`)) ?? 'null') : null
}

describe('keys revoke --url', () => {
  it('stops a key the Worker has cached on the very next request', async () => {
    const first = await chat()
    expect(first.status).toBe(200)
    await first.text()
    const { lines, out } = capture()
    expect(await runKeysCli(['revoke', KEY_ID, '--url', worker.url], { out, env: { GATEWAY_ADMIN_KEY: ADMIN_KEY } })).toBe(0)
    expect(lines.join('\n')).toMatch(/^Revoked key_00000000000000c1 \(stack\) through http:\/\/127\.0\.0\.1:\d+;.*\n.*within seconds/)
    const after = await chat()
    expect(after.status).toBe(401)
    expect(await after.json()).toMatchObject({ error: { code: 'invalid_api_key', message: 'This API key has been revoked.' } })
    const again = capture()
    expect(await runKeysCli(['revoke', KEY_ID, '--url', worker.url], { out: again.out, env: { GATEWAY_ADMIN_KEY: ADMIN_KEY } })).toBe(0)
    expect(again.lines[0]).toBe(`${KEY_ID} (stack) was already revoked.`)
  })

  it('needs GATEWAY_ADMIN_KEY and refuses the KV location options, which the Worker does not use', async () => {
    const missing = capture()
    expect(await runKeysCli(['revoke', KEY_ID, '--url', worker.url], { out: missing.out, env: {} })).toBe(2)
    expect(missing.lines.join('\n')).toContain('GATEWAY_ADMIN_KEY')
    const remote = capture()
    const argv = ['revoke', KEY_ID, '--url', worker.url, '--remote']
    expect(await runKeysCli(argv, { out: remote.out, env: { GATEWAY_ADMIN_KEY: ADMIN_KEY } })).toBe(2)
    expect(remote.lines.join('\n')).toContain('drop --remote')
  })
})

describe('keys revoke without --url', () => {
  it('takes the fast path through the Worker at GATEWAY_URL, and writes no KV itself', async () => {
    expect((await chat(FOUND_KEYS.GATEWAY_URL)).status).toBe(200)
    const { lines, errors, out } = capture()
    const calls: string[][] = []
    const env = { GATEWAY_ADMIN_KEY: ADMIN_KEY, GATEWAY_URL: `${worker.url}/` }
    expect(await runKeysCli(['revoke', FOUND_IDS.GATEWAY_URL], { out, env, run: noWrangler(calls) })).toBe(0)
    expect(lines.join('\n')).toMatch(
      /^Revoked key_00000000000000d1 \(stack\) through http:\/\/127\.0\.0\.1:\d+ \(from GATEWAY_URL\);.*\n.*within seconds/,
    )
    expect(errors).toEqual([])
    expect(calls).toEqual([])
    expect((await chat(FOUND_KEYS.GATEWAY_URL)).status).toBe(401)
  })

  it("finds the Worker in wrangler.toml's PUBLIC_ORIGINS when GATEWAY_URL is not set (a loopback origin for local state)", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keys-revoke-config-'))
    try {
      const config = join(dir, 'wrangler.toml')
      await writeFile(
        config,
        `name = "revoke-test"\ncompatibility_date = "2026-11-01"\n\n[vars]\nPUBLIC_ORIGINS = "https://api.example.com,${worker.url}"\n`,
      )
      const { lines, out } = capture()
      const calls: string[][] = []
      const argv = ['revoke', FOUND_IDS.PUBLIC_ORIGINS, '--config', config]
      expect(await runKeysCli(argv, { out, env: { GATEWAY_ADMIN_KEY: ADMIN_KEY }, run: noWrangler(calls) })).toBe(0)
      expect(lines[0]).toMatch(
        /^Revoked key_00000000000000e1 \(stack\) through http:\/\/127\.0\.0\.1:\d+ \(from PUBLIC_ORIGINS in wrangler\.toml\);/,
      )
      expect(calls).toEqual([])
      expect((await chat(FOUND_KEYS.PUBLIC_ORIGINS)).status).toBe(401)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('cannot reach the Worker: says so plainly, writes disabled: true to KV itself, and says how long the key stays usable', async () => {
    const record = await localKey('unreachable')
    const closed = `http://127.0.0.1:${await freePort()}`
    const { lines, errors, out } = capture()
    const env = { GATEWAY_ADMIN_KEY: ADMIN_KEY, GATEWAY_URL: closed }
    expect(await runKeysCli(['revoke', record.id, '--persist-to', local.dir], { out, env, run: kvStandIn(local) })).toBe(0)
    expect(errors.join('\n')).toMatch(
      new RegExp(`^Could not revoke ${record.id} through the Worker at ${closed} \\(from GATEWAY_URL\\): Could not reach`),
    )
    const said = lines.join('\n')
    expect(said).toContain(`Revoked ${record.id} (unreachable) in the local KEYS namespace only`)
    expect(said).toContain('The key stays usable wherever a Worker cached it, for up to KEY_CACHE_TTL_MS (60 s by default).')
    expect(said).toContain('GATEWAY_URL, or pass --url URL')
    expect((await localRecord(record.id))?.disabled).toBe(true)
  })

  it("falls back to KV as well when the Worker it reaches does not know the key (another deployment's state)", async () => {
    const record = await localKey('elsewhere')
    const { lines, errors, out } = capture()
    const env = { GATEWAY_ADMIN_KEY: ADMIN_KEY, GATEWAY_URL: worker.url }
    expect(await runKeysCli(['revoke', record.id, '--persist-to', local.dir], { out, env, run: kvStandIn(local) })).toBe(0)
    expect(errors.join('\n')).toContain(`No API key with id '${record.id}'. (HTTP 404)`)
    expect(lines.join('\n')).toContain('in the local KEYS namespace only')
    expect((await localRecord(record.id))?.disabled).toBe(true)
  })

  it('without GATEWAY_ADMIN_KEY: revokes in KV and says that it did not take the fast path, and why', async () => {
    const record = await localKey('no-admin-key')
    const { lines, errors, out } = capture()
    expect(await runKeysCli(['revoke', record.id, '--persist-to', local.dir], { out, env: {}, run: kvStandIn(local) })).toBe(0)
    expect(errors).toEqual(['Not revoking through the Worker: GATEWAY_ADMIN_KEY (an admin-scope key) is not set.'])
    expect(lines.join('\n')).toContain('KEY_CACHE_TTL_MS (60 s by default)')
    expect((await localRecord(record.id))?.disabled).toBe(true)
  })

  it('with --remote, says the key stays usable for the cache TTL plus KV propagation, about 2 minutes', async () => {
    const record = newKeyRecord({ name: 'remote' })
    const hash = 'f'.repeat(64)
    const stored = new Map([
      [`keyid:${record.id}`, hash],
      [`key:${hash}`, JSON.stringify(record)],
    ])
    // wrangler --remote prints the API's {key: value} for bulk get.
    const remote = async (args: string[]): Promise<string> => {
      if (args[1] === 'bulk' && args[2] === 'get') {
        const keys = JSON.parse(await readFile(args[3] ?? '', 'utf8')) as string[]
        return JSON.stringify(Object.fromEntries(keys.map((key) => [key, stored.get(key) ?? null])))
      }
      return 'Success!'
    }
    const { lines, errors, out } = capture()
    expect(await runKeysCli(['revoke', record.id, '--remote'], { out, env: {}, run: remote })).toBe(0)
    expect(errors[0]).toContain('GATEWAY_ADMIN_KEY')
    expect(lines.join('\n')).toContain('KEY_CACHE_TTL_MS (60 s by default) plus KV propagation (up to about 60 s): about 2 minutes.')
  })
})
