// npm start: the local stack. The vLLM emulators of the GPU fleet file's emulator profile
// (gpu-backend/compose.yaml: ports 8001 and 8002, as wrangler.toml's BACKEND_URLS expects, and
// their flags) and the Worker under `wrangler dev` on http://127.0.0.1:8787, offline.
// Ctrl-C stops everything it started. Flags: --port N (Worker), --emulator-ports A,B, --persist-to DIR
// (local KV and Durable Object state; default .wrangler/state, tests use a fresh one). A port
// already taken stops it before anything starts, with one line naming the flag that picks another.
// It also makes sure local KV holds an API key for the Worker (DEV_API_KEY in .dev.vars).
// An emulator that dies is reported and restarted on its port (scripts/supervise.ts): the Worker
// fails over to the other meanwhile, as it does for a GPU host. wrangler dev dying stops it all.
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { COMPOSE_FILE, emulatorServices, flagValue, readComposeFile } from './fleet/compose.ts'
import { ensureDevKey } from './keys/dev-key.ts'
import { wranglerKv } from './keys/kv.ts'
import { ROOT, portInUse, startWrangler, waitForLine, type Child } from './processes.ts'
import { spawnEmulator, type RunningEmulator } from './stack.ts'
import { supervise, type Supervised } from './supervise.ts'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8787' },
    'emulator-ports': { type: 'string' },
    'persist-to': { type: 'string' },
  },
})
const workerPort = Number(values.port)
const persistTo = values['persist-to'] === undefined ? undefined : resolve(values['persist-to'])
// One shape for the local fleet and the GPU one: the emulators run as the fleet file describes them.
const emulators = emulatorServices(readComposeFile(COMPOSE_FILE))
const emulatorPorts = values['emulator-ports']?.split(',').map(Number) ?? emulators.map((emulator) => emulator.port)
/** The flags of the emulator service at the same place; more ports than services repeat the first. */
const emulatorArgs = (index: number): string[] => (emulators[index] ?? emulators[0])?.args ?? []
const MODEL = flagValue(emulatorArgs(0), '--served-model-name') ?? 'deepseek-r1-distill-qwen-1.5b'

const children: Child[] = []
const supervised: Supervised<Child>[] = []
let stopping = false

async function stopAll(code: number): Promise<never> {
  stopping = true
  await Promise.all([...supervised.map((emulator) => emulator.stop()), ...children.map((child) => child.stop())])
  process.exit(code)
}
process.on('SIGINT', () => void stopAll(0))
process.on('SIGTERM', () => void stopAll(0))

/** A local secret kept in the git-ignored .dev.vars that wrangler dev reads; made once. */
function devSecret(name: string, make: () => string): string {
  const file = join(ROOT, '.dev.vars')
  const existing = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const match = new RegExp(`^${name}=(.+)$`, 'm').exec(existing)
  if (match?.[1]) return match[1].trim()
  const value = make()
  writeFileSync(file, `${existing}${existing && !existing.endsWith('\n') ? '\n' : ''}${name}=${value}\n`)
  return value
}

/** The backends' shared API key. */
const backendApiKey = () => devSecret('BACKEND_API_KEY', () => `bk-${randomBytes(24).toString('hex')}`)

/** Emulator `i` on its port, kept running: a restart comes back on the same URL, the one the Worker knows. */
async function superviseEmulator(port: number, i: number, env: Record<string, string>): Promise<string> {
  const emulator = await supervise<RunningEmulator>({
    name: `emulator ${i + 1}`,
    // A port taken since checkPorts: the same line as there, not the emulator's startup output.
    start: () =>
      spawnEmulator(emulatorArgs(i), port, env).catch((error: unknown) => {
        throw /EADDRINUSE/.test(String(error)) ? new Error(portTaken(port, 'emulator')) : error
      }),
    log: (line) => console.error(line),
  })
  supervised.push(emulator)
  const first = emulator.current() as RunningEmulator
  console.log(`vLLM emulator  ${first.url} (pid ${first.process.pid})`)
  return first.url
}

function watch(child: Child, name: string): void {
  children.push(child)
  child.process.once('exit', (code) => {
    if (stopping) return
    console.error(`${name} exited unexpectedly (${code}); stopping the stack.`)
    void stopAll(1)
  })
}

/** What to say when `port` is taken: one line, naming the flag that picks another. */
function portTaken(port: number, what: 'worker' | 'emulator'): string {
  return what === 'worker'
    ? `Port ${port} (the Worker) is already in use: stop what listens there, or pick another port with --port N.`
    : `Port ${port} (a vLLM emulator) is already in use: stop what listens there, or pick free ports with --emulator-ports A,B.`
}

/** Every port the stack needs, checked before anything starts, so that a taken one is one clear line rather than a child's failure. */
async function checkPorts(): Promise<string | null> {
  const wanted = [[workerPort, 'worker'], ...emulatorPorts.map((port) => [port, 'emulator'] as const)] as const
  for (const [port, what] of wanted) if (await portInUse(port)) return portTaken(port, what)
  return null
}

/**
 * wrangler reads CLOUDFLARE_ENV as --env: set in this shell, wrangler dev would serve that
 * environment (production's settings and namespace names) instead of the local stack.
 */
function refusedEnvironment(): string | null {
  const env = process.env.CLOUDFLARE_ENV
  if (env === undefined || env === '') return null
  return `CLOUDFLARE_ENV is set (${JSON.stringify(env)}): wrangler would run wrangler.toml's [env.${env}] instead of the local stack. Unset it for npm start (env -u CLOUDFLARE_ENV npm start).`
}

async function main(): Promise<void> {
  const refused = refusedEnvironment()
  if (refused !== null) {
    console.error(refused)
    process.exit(1)
  }
  const taken = await checkPorts()
  if (taken !== null) {
    console.error(taken)
    process.exit(1)
  }
  const apiKey = backendApiKey()
  // Signs browser stream tokens and stream session URLs (the playground needs it).
  devSecret('STREAM_TOKEN_SECRETS', () => randomBytes(32).toString('base64url'))
  // The default local state (.wrangler/state beside wrangler.toml) is the one wrangler dev reads.
  // Made alongside the emulators and wrangler dev's start (each takes a second or more); the key
  // and the Worker's URL are printed once both are there, so nobody holds the key before.
  const devKey = ensureDevKey(wranglerKv({ remote: false, persistTo, config: join(ROOT, 'wrangler.toml') }))
  // A failure is reported at the await below, once the emulators are watched and can be stopped.
  devKey.catch(() => {})
  const backends = await Promise.all(emulatorPorts.map((port, i) => superviseEmulator(port, i, { VLLM_API_KEY: apiKey })))

  const wrangler = startWrangler([
    'dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(workerPort),
    '--var',
    `BACKEND_URLS:${backends.join(',')}`,
    // The Worker's own origin is a setting, not the request's Host (docs/api.md).
    '--var',
    `PUBLIC_ORIGINS:http://127.0.0.1:${workerPort},http://localhost:${workerPort}`,
    ...(persistTo === undefined ? [] : ['--persist-to', persistTo]),
  ])
  watch(wrangler, 'wrangler dev')
  // Listening from the start, so the line is not missed while the key is being made.
  const ready = waitForLine(wrangler.process, /Ready on (http:\/\/\S+)/, 60_000)
  ready.catch(() => {})
  wrangler.process.stderr?.pipe(process.stderr)
  const { secret, id, created } = await devKey
  console.log(`API key        ${secret} (${id}, chat+admin, ${created ? 'new' : 'existing'}; DEV_API_KEY in .dev.vars)`)
  const url = await ready
  console.log(`Worker         ${url} (wrangler pid ${wrangler.process.pid})`)
  console.log('\nStream a completion:\n')
  console.log(
    `curl -N ${url}/v1/chat/completions -H "Authorization: Bearer ${secret}" -H 'content-type: application/json' ` +
      `-d '{"model":"${MODEL}","stream":true,"messages":[{"role":"user","content":"What is 7 * 6?"}]}'\n`,
  )
  console.log(`Playground: ${url}/playground#key=${secret}\n`)
  console.log('Ctrl-C stops everything.')
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  void stopAll(1)
})
