import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { Miniflare, compileModuleRules, convertV4MiniflareOptions, testRegExps } from 'miniflare'
import { unstable_readConfig } from 'wrangler'
import { KEY_ID_PREFIX, KEY_PREFIX, hashSecret, newKeyRecord, type KeyRecord } from '../src/auth/key-record.ts'
import { ROOT, freePort, startChild, startWrangler, stopChild, waitForLine, type Child } from './processes.ts'

// The local stack without wrangler's dev proxy: vLLM emulators as child processes and the built
// Worker bundle served by Miniflare (workerd) directly. Used by the end-to-end tests and the
// benchmark; `npm start` uses wrangler dev instead, as developers do.

export interface RunningEmulator extends Child {
  url: string
}

/**
 * The emulator as the end-to-end tests run it: serving `model` with vLLM's DeepSeek-R1 reasoning
 * parser, behind the backends' API key, with a short first token and gap between tokens.
 */
export function reasoningBackendArgs(model: string, apiKey: string, timing: { ttftMs: number; itlMs: number }): string[] {
  return [
    '--served-model-name',
    model,
    '--reasoning-parser',
    'deepseek_r1',
    '--api-key',
    apiKey,
    '--ttft-ms',
    String(timing.ttftMs),
    '--itl-ms',
    String(timing.itlMs),
  ]
}

/**
 * Starts `node gpu-backend/emulator/main.ts` with vLLM-style flags; port 0 picks a free port.
 * Pass a secret such as VLLM_API_KEY through `env`, not `args`, to keep it out of `ps`.
 */
export async function spawnEmulator(args: string[] = [], port = 0, env: Record<string, string> = {}): Promise<RunningEmulator> {
  const child = startChild(process.execPath, [join(ROOT, 'gpu-backend/emulator/main.ts'), '--port', String(port), ...args], {
    env: { ...process.env, ...env },
  })
  try {
    // Generous: on a loaded 2-core machine a Node start with TypeScript stripping can take seconds.
    const url = await waitForLine(child.process, /listening on (http:\/\/\S+)/, 30_000)
    return { ...child, url }
  } catch (error) {
    await child.stop()
    throw error
  }
}

/**
 * Bundles the Worker exactly as a deploy would (wrangler, esbuild) into dist/ and returns the
 * file; another entry (a benchmark variant) goes to dist/<outdir>/. `readableNames: true` leaves
 * it unminified, so a CPU profile names the functions (bench/profile.ts).
 */
export async function buildWorker(entry?: { script: string; outdir: string }, options: { readableNames?: boolean } = {}): Promise<string> {
  const outdir = entry ? join('dist', entry.outdir) : 'dist'
  await bundleInto(outdir, entry?.script, options.readableNames === true)
  // wrangler names the bundle after its entry file.
  return join(ROOT, outdir, entry ? `${basename(entry.script, '.ts')}.js` : 'index.js')
}

async function bundleInto(outdir: string, script?: string, readableNames = false): Promise<void> {
  const args = ['deploy', ...(script ? [script] : []), '--dry-run', '--outdir', outdir, ...(readableNames ? ['--minify=false'] : [])]
  const wrangler = startWrangler(args)
  await waitForLine(wrangler.process, /(--dry-run: exiting now)/, 60_000)
  await stopChild(wrangler.process)
}

/**
 * The same bundle in a fresh temporary directory of its own, for tests running side by side:
 * two builds into one dist/ could serve a half-written file.
 */
export async function buildPrivateWorker(): Promise<string> {
  // Inside the project: workerd refuses a module path that climbs out of its starting directory.
  mkdirSync(join(ROOT, 'dist'), { recursive: true })
  const outdir = mkdtempSync(join(ROOT, 'dist', 'private-'))
  await bundleInto(outdir)
  return join(outdir, 'index.js')
}

export interface ServedWorker {
  url: string
  dispose(): Promise<void>
}

export interface ServeOptions {
  /** API keys to create in the KEYS namespace before serving (secret -> record fields). */
  keys?: { secret: string; fields?: Partial<KeyRecord> }[]
  /** Bind the Durable Objects (KeyLimiter, TelemetryAggregator, StreamSession, DashboardLink, BackendSlots; default true); false for scripts that do not export them. */
  limiter?: boolean
  /** Serve Miniflare's /cdn-cgi/local/scheduled, which runs the Worker's cron handler (default false). */
  triggerHandlers?: boolean
  /** Opens workerd's V8 inspector on this 127.0.0.1 port (bench/profile.ts takes CPU profiles through it). */
  inspectorPort?: number
}

interface ModuleRule {
  type: 'ESModule' | 'CommonJS' | 'CompiledWasm' | 'Text' | 'Data' | 'PythonModule' | 'PythonRequirement'
  globs: string[]
  fallthrough?: boolean
}

/** An `import NAME from "./FILE"` of a module wrangler wrote beside the bundle (a page, as text), minified or not. */
const SIBLING_IMPORT = /\bimport\s*[\w$]+\s*from\s*"\.\/([^"/]+)"/g

/**
 * The bundle and the modules it imports from beside itself (the pages: text modules by
 * wrangler.toml's [[rules]]), typed by those rules as a deploy uploads them. Listed one by one
 * because Miniflare 5 converts `modules: true` into the main module alone.
 */
function bundleModules(scriptPath: string, rules: readonly ModuleRule[]) {
  const compiled = compileModuleRules(
    rules.map((rule) => ({ type: rule.type, include: rule.globs, fallthrough: rule.fallthrough ?? false })),
  )
  const source = readFileSync(scriptPath, 'utf8')
  const siblings = [...source.matchAll(SIBLING_IMPORT)].map((match) => {
    const name = match[1] as string
    const rule = compiled.find((candidate) => testRegExps(candidate.include, name))
    if (!rule) throw new Error(`the bundle imports ${name}, which no module rule in wrangler.toml matches`)
    return { type: rule.type, path: join(dirname(scriptPath), name) }
  })
  return [{ type: 'ESModule' as const, path: scriptPath, contents: source }, ...siblings]
}

const KV_NAMESPACES = ['KEYS', 'FLEET', 'LATENCY']

/**
 * The Worker's Durable Object bindings, hosted by this script or (scriptName) by another; `extra`
 * binds more (binding -> class) for a bundle built from another commit (bench:fleet's smart_before).
 */
function durableObjects(scriptName?: string, extra: Record<string, string> = {}) {
  const object = (className: string) => ({ className, useSQLite: true, ...(scriptName ? { scriptName } : {}) })
  return {
    LIMITER: object('KeyLimiter'),
    TELEMETRY: object('TelemetryAggregator'),
    STREAMS: object('StreamSession'),
    DASHBOARD_LINKS: object('DashboardLink'),
    BACKEND_SLOTS: object('BackendSlots'),
    RESPONSES: object('ResponseStore'),
    ...Object.fromEntries(Object.entries(extra).map(([binding, className]) => [binding, object(className)])),
  }
}

/** One copy of the built Worker with wrangler.toml's settings and these overrides. */
function gatewayWorker(scriptPath: string, vars: Record<string, string>) {
  const config = unstable_readConfig({ config: join(ROOT, 'wrangler.toml') })
  return {
    modules: bundleModules(scriptPath, config.rules),
    modulesRoot: dirname(scriptPath),
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags,
    bindings: { ...(config.vars as Record<string, string>), ...vars },
    kvNamespaces: KV_NAMESPACES,
  }
}

async function seedKeys(miniflare: Miniflare, keys: ServeOptions['keys'], workerName?: string): Promise<void> {
  const kv = await miniflare.getKVNamespace('KEYS', workerName)
  for (const { secret, fields } of keys ?? []) {
    const record = newKeyRecord({ name: 'stack', ...fields })
    const hash = await hashSecret(secret)
    await kv.put(KEY_PREFIX + hash, JSON.stringify(record))
    await kv.put(KEY_ID_PREFIX + record.id, hash)
  }
}

/**
 * Serves a built module Worker on 127.0.0.1 with wrangler.toml's settings and these overrides,
 * with an in-memory KEYS namespace holding the given keys.
 */
export async function serveWorker(scriptPath: string, vars: Record<string, string>, options: ServeOptions = {}): Promise<ServedWorker> {
  // The Worker's own origin is a setting (PUBLIC_ORIGINS), so the port is chosen before it starts.
  const port = await freePort()
  // Miniflare 5 (the one wrangler uses) takes a new options shape; it converts the classic one.
  const miniflare = new Miniflare(
    convertV4MiniflareOptions({
      ...gatewayWorker(scriptPath, { PUBLIC_ORIGINS: `http://127.0.0.1:${port}`, ...vars }),
      ...(options.limiter === false ? {} : { durableObjects: durableObjects() }),
      unsafeTriggerHandlers: options.triggerHandlers === true,
      host: '127.0.0.1',
      port,
      ...(options.inspectorPort === undefined ? {} : { inspectorPort: options.inspectorPort, inspectorHost: '127.0.0.1' }),
    }),
  )
  const url = await miniflare.ready
  await seedKeys(miniflare, options.keys)
  return { url: url.origin, dispose: () => miniflare.dispose() }
}

/**
 * The built Worker as `isolates` copies in one workerd, each its own isolate (its own module
 * state: live stats, caches, the fleet load view), sharing the KV namespaces (by id) and the
 * Durable Object namespaces (hosted by one more copy, "objects", that takes no traffic), as the
 * isolates of a deployment do. A bench-only router in front (bench/isolate-router.js) sends each
 * request to a copy at random, as Cloudflare spreads requests over isolates.
 */
export async function serveIsolates(
  scriptPath: string,
  vars: Record<string, string>,
  options: { isolates: number; keys?: ServeOptions['keys']; extraObjects?: Record<string, string> },
): Promise<ServedWorker> {
  const names = Array.from({ length: options.isolates }, (_, i) => `gateway-${i}`)
  const extra = options.extraObjects
  const miniflare = new Miniflare(
    convertV4MiniflareOptions({
      host: '127.0.0.1',
      port: 0,
      workers: [
        {
          name: 'router',
          modules: true,
          scriptPath: join(ROOT, 'bench/isolate-router.js'),
          compatibilityDate: unstable_readConfig({ config: join(ROOT, 'wrangler.toml') }).compatibility_date,
          bindings: { ISOLATES: String(options.isolates) },
          serviceBindings: Object.fromEntries(names.map((name, i) => [`GW${i}`, name])),
        },
        { name: 'objects', ...gatewayWorker(scriptPath, vars), durableObjects: durableObjects(undefined, extra) },
        ...names.map((name) => ({ name, ...gatewayWorker(scriptPath, vars), durableObjects: durableObjects('objects', extra) })),
      ],
    }),
  )
  const url = await miniflare.ready
  await seedKeys(miniflare, options.keys, 'objects')
  return { url: url.origin, dispose: () => miniflare.dispose() }
}
