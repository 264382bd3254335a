// A KV namespace (KEYS, or the binding the target names) through wrangler's own `kv` commands, so
// local state and --remote take the same path: locally wrangler opens the same Miniflare storage
// that `wrangler dev` uses, remotely it calls the Cloudflare API with the user's login. Values
// travel in a private temp JSON file passed by path, never on a command line or through a shell,
// so their size and characters do not matter.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startWrangler } from '../processes.ts'

/** Where the namespace lives. */
export interface KvTarget {
  remote: boolean
  /** Local state directory; undefined: wrangler's default (.wrangler/state beside the config), as wrangler dev. */
  persistTo: string | undefined
  /** Absolute path of the wrangler config that declares the binding. */
  config: string
  /** The namespace's binding in that config; default KEYS. The fleet CLI uses FLEET. */
  binding?: string
  /** The wrangler environment whose binding it is ([env.NAME], wrangler's --env); undefined: the top level. */
  env?: string | undefined
}

export interface KvEntry {
  key: string
  value: string
}

export interface Kv {
  /** Values by key; null for a key that does not exist. */
  getMany(keys: readonly string[]): Promise<Map<string, string | null>>
  putMany(entries: readonly KvEntry[]): Promise<void>
  listKeys(prefix: string): Promise<string[]>
}

/** Runs wrangler with these arguments and resolves with its stdout; rejects when it fails. */
export type WranglerRunner = (args: string[]) => Promise<string>

/** The Cloudflare bulk read API takes at most 100 keys a request. */
const BULK_GET_MAX = 100

/**
 * wrangler's arguments for one KV operation on the target's binding. Pure, so a test can check that
 * --remote changes nothing but the location flag, without network.
 */
export function kvArgs(target: KvTarget, operation: readonly string[]): string[] {
  const location = target.remote ? ['--remote'] : ['--local', ...(target.persistTo === undefined ? [] : ['--persist-to', target.persistTo])]
  const environment = target.env === undefined ? [] : ['--env', target.env]
  return ['kv', ...operation, '--binding', target.binding ?? 'KEYS', '--config', target.config, ...environment, ...location]
}

export function wranglerKv(target: KvTarget, run: WranglerRunner = runWrangler): Kv {
  return {
    async getMany(keys) {
      const values = new Map<string, string | null>()
      for (let start = 0; start < keys.length; start += BULK_GET_MAX) {
        const chunk = keys.slice(start, start + BULK_GET_MAX)
        const stdout = await withJsonFile(chunk, (file) => run(kvArgs(target, ['bulk', 'get', file])))
        for (const [key, value] of parseBulkGet(stdout, chunk)) values.set(key, value)
      }
      return values
    },
    async putMany(entries) {
      await withJsonFile(entries, (file) => run(kvArgs(target, ['bulk', 'put', file])))
    },
    async listKeys(prefix) {
      const stdout = await run(kvArgs(target, ['key', 'list', '--prefix', prefix]))
      const listed = parseJsonOutput(stdout)
      if (!Array.isArray(listed)) throw new Error('wrangler kv key list did not print a JSON array')
      return listed.map((entry: unknown) => nameOf(entry))
    },
  }
}

/**
 * `wrangler kv bulk get` prints `{key: {value}}` for local storage but the API's `{key: value}` for
 * --remote; either way a missing key has a null value.
 */
export function parseBulkGet(stdout: string, keys: readonly string[]): Map<string, string | null> {
  const printed = parseJsonOutput(stdout)
  if (typeof printed !== 'object' || printed === null) throw new Error('wrangler kv bulk get did not print a JSON object')
  const values = new Map<string, string | null>()
  for (const key of keys) {
    const entry: unknown = (printed as Record<string, unknown>)[key]
    const value: unknown = typeof entry === 'object' && entry !== null ? (entry as { value?: unknown }).value : entry
    values.set(key, typeof value === 'string' ? value : null)
  }
  return values
}

/** The JSON document in wrangler's stdout, skipping any notice lines printed before it. */
function parseJsonOutput(stdout: string): unknown {
  const start = stdout.search(/^[[{]/m)
  if (start === -1) throw new Error(`wrangler printed no JSON:\n${stdout}`)
  return JSON.parse(stdout.slice(start)) as unknown
}

function nameOf(entry: unknown): string {
  const name: unknown = typeof entry === 'object' && entry !== null ? (entry as { name?: unknown }).name : undefined
  if (typeof name !== 'string') throw new Error('wrangler kv key list printed an entry without a name')
  return name
}

async function withJsonFile<T>(data: unknown, use: (path: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'keys-cli-'))
  try {
    const file = join(dir, 'data.json')
    await writeFile(file, JSON.stringify(data), { mode: 0o600 })
    return await use(file)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** wrangler on the project's Node, offline env; its output is kept, and shown only if it fails. */
export const runWrangler: WranglerRunner = (args) =>
  new Promise((resolve, reject) => {
    const child = startWrangler(args).process
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk))
    child.once('error', reject)
    child.once('close', (code) => {
      const out = Buffer.concat(stdout).toString('utf8')
      if (code === 0) return resolve(out)
      const detail = Buffer.concat(stderr).toString('utf8').trim() || out.trim()
      reject(new Error(`wrangler ${args.slice(0, 3).join(' ')} failed (exit ${code}):\n${detail}`))
    })
  })
