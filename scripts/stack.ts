import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { Miniflare, compileModuleRules, convertV4MiniflareOptions, testRegExps } from 'miniflare'
import { unstable_readConfig } from 'wrangler'
import { KEY_ID_PREFIX, KEY_PREFIX, hashSecret, newKeyRecord, type KeyRecord } from '../src/auth/key-record.ts'
import { ROOT, startChild, startWrangler, stopChild, waitForLine, type Child } from './processes.ts'

// The local stack without wrangler's dev proxy: vLLM emulators as child processes and the built
// Worker bundle served by Miniflare (workerd) directly. Used by the end-to-end tests and the
// benchmark; `npm start` uses wrangler dev instead, as developers do.

export interface RunningEmulator extends Child {
  url: string
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
    const url = await waitForLine(child.process, /listening on (http:\/\/\S+)/, 10_000)
    return { ...child, url }
  } catch (error) {
    await child.stop()
    throw error
  }
}

/**
 * Bundles the Worker exactly as a deploy would (wrangler, esbuild) into dist/ and returns the
 * file; another entry (a benchmark variant) goes to dist/<outdir>/.
 */
export async function buildWorker(entry?: { script: string; outdir: string }): Promise<string> {
  const outdir = entry ? join('dist', entry.outdir) : 'dist'
  await bundleInto(outdir, entry?.script)
  // wrangler names the bundle after its entry file.
  return join(ROOT, outdir, entry ? `${basename(entry.script, '.ts')}.js` : 'index.js')
}

async function bundleInto(outdir: string, script?: string): Promise<void> {
  const wrangler = startWrangler(['deploy', ...(script ? [script] : []), '--dry-run', '--outdir', outdir])
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
  /** Bind the Durable Objects (KeyLimiter, TelemetryAggregator, StreamSession, FleetLoad; default true); false for scripts that do not export them. */
  limiter?: boolean
  /** Serve Miniflare's /cdn-cgi/local/scheduled, which runs the Worker's cron handler (default false). */
  triggerHandlers?: boolean
}

interface ModuleRule {
  type: 'ESModule' | 'CommonJS' | 'CompiledWasm' | 'Text' | 'Data' | 'PythonModule' | 'PythonRequirement'
  globs: string[]
  fallthrough?: boolean
}

/** An `import NAME from "./FILE"` of a module wrangler wrote beside the bundle (a page, as text). */
const SIBLING_IMPORT = /^import \w+ from "\.\/([^"/]+)";$/gm

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

/**
 * Serves a built module Worker on 127.0.0.1 with wrangler.toml's settings and these overrides,
 * with an in-memory KEYS namespace holding the given keys.
 */
export async function serveWorker(scriptPath: string, vars: Record<string, string>, options: ServeOptions = {}): Promise<ServedWorker> {
  const config = unstable_readConfig({ config: join(ROOT, 'wrangler.toml') })
  // Miniflare 5 (the one wrangler uses) takes a new options shape; it converts the classic one.
  const miniflare = new Miniflare(
    convertV4MiniflareOptions({
      modules: bundleModules(scriptPath, config.rules),
      modulesRoot: dirname(scriptPath),
      compatibilityDate: config.compatibility_date,
      compatibilityFlags: config.compatibility_flags,
      bindings: { ...(config.vars as Record<string, string>), ...vars },
      kvNamespaces: ['KEYS', 'FLEET', 'LATENCY'],
      ...(options.limiter === false
        ? {}
        : {
            durableObjects: {
              LIMITER: { className: 'KeyLimiter', useSQLite: true },
              TELEMETRY: { className: 'TelemetryAggregator', useSQLite: true },
              STREAMS: { className: 'StreamSession', useSQLite: true },
              FLEET_LOAD: { className: 'FleetLoad', useSQLite: true },
            },
          }),
      unsafeTriggerHandlers: options.triggerHandlers === true,
      host: '127.0.0.1',
      port: 0,
    }),
  )
  const url = await miniflare.ready
  const kv = await miniflare.getKVNamespace('KEYS')
  for (const { secret, fields } of options.keys ?? []) {
    const record = newKeyRecord({ name: 'stack', ...fields })
    const hash = await hashSecret(secret)
    await kv.put(KEY_PREFIX + hash, JSON.stringify(record))
    await kv.put(KEY_ID_PREFIX + record.id, hash)
  }
  return { url: url.origin, dispose: () => miniflare.dispose() }
}
