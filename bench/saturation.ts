// npm run bench:saturation: the fleet full, before and with the edge queue. bench:fleet's four
// emulated backends (bench/fleet-traffic.ts's load model, max-num-seqs 8) with vLLM's priority
// scheduling (--scheduling-policy priority), behind two builds side by side in one run: "before",
// built here from BASELINE_COMMIT (bdc3c53, before the queue: a full fleet answers 503 at once),
// and "queue", the working tree. Each build runs as BENCH_ISOLATES (8) isolates sharing KV and
// Durable Objects (scripts/stack.ts serveIsolates), with four keys of roomy limits: interactive,
// batch, and two standard keys of weight 1. Every request is the first turn of a new conversation
// of bench/fleet-workload.ts. After one closed-loop capacity probe, each run goes through four
// open-loop (Poisson) phases of BENCH_PHASE_MS, the builds interleaved per phase, their order
// swapped every run: idle (interactive alone at 20% of capacity), batch flood (batch at 3x while
// interactive sends at 20%), fairness (both standard keys at 1.5x each) and not saturated
// (standard-a alone at 50%). Between phases every backend drains to idle and its stats reset.
// Medians over BENCH_RUNS (3) runs; writes bench/results/saturation.{json,md}. Bounded: fixed
// phases, at most MAX_IN_FLIGHT client requests at once, a drain limit, a whole-run time limit.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import type { PriorityClass } from '../src/auth/key-record.ts'
import { ROOT, startWrangler, stopChild, waitForLine } from '../scripts/processes.ts'
import { serveIsolates, type RunningEmulator, type ServedWorker } from '../scripts/stack.ts'
import { MAX_NUM_SEQS, ROOMY_LIMITS, answerOutcome, gatewayVars, measureCapacity, startBackends } from './fleet-traffic.ts'
import { conversationTurn, newConversation } from './fleet-workload.ts'
import { BUILDS, report, type Build, type Outcome, type Phase, type Role, type RunRecord, type Setup } from './saturation-report.ts'
import { round } from './stats.ts'

/** The build before the edge queue; BENCH_BASELINE=REV compares another commit (a variant of the queue). */
const BASELINE_COMMIT = process.env.BENCH_BASELINE ?? 'bdc3c53'
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const ISOLATES = Number(process.env.BENCH_ISOLATES ?? 8)
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 10_000)
/** A phase's requests still running this long after its last arrival are cut (counted as failed). */
const DRAIN_LIMIT_MS = 45_000
/** Client requests in flight at most (all keys); an arrival past it is not sent and is counted. */
const MAX_IN_FLIGHT = 2_000
const TIME_LIMIT_MS = 30 * 60_000
const IDLE_LIMIT_MS = 60_000
const startedAt = Date.now()
const RAW_FILE = join(ROOT, 'bench/out/saturation-raw.json')

const KEYS: Record<Role, { secret: string; priority: PriorityClass; weight: number }> = {
  interactive: { secret: `sk-${'i'.repeat(43)}`, priority: 'interactive', weight: 1 },
  batch: { secret: `sk-${'b'.repeat(43)}`, priority: 'batch', weight: 1 },
  'standard-a': { secret: `sk-${'a'.repeat(43)}`, priority: 'standard', weight: 1 },
  'standard-b': { secret: `sk-${'c'.repeat(43)}`, priority: 'standard', weight: 1 },
}

/** The phases, in order: which keys send, at what share of the capacity. */
const PHASES: Record<Phase, Partial<Record<Role, number>>> = {
  idle: { interactive: 0.2 },
  flood: { interactive: 0.2, batch: 3 },
  fairness: { 'standard-a': 1.5, 'standard-b': 1.5 },
  not_saturated: { 'standard-a': 0.5 },
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function checkTime(): void {
  if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error('saturation benchmark exceeded its time limit')
}

/** Modules the bundle imports from beside itself (the pages) that are missing there. */
function missingSiblings(script: string): string[] {
  const names = [...readFileSync(script, 'utf8').matchAll(/^import \w+ from "\.\/([^"/]+)";$/gm)].map((m) => m[1] as string)
  return names.filter((name) => !existsSync(join(dirname(script), name)))
}

/**
 * `wrangler deploy --dry-run` of the sources in `cwd` (its wrangler.toml) into a new directory
 * dist/saturation-<name>-*, as scripts/stack.ts buildWorker bundles; returns the bundle. Inside
 * the project: workerd refuses a module path that climbs out of its starting directory.
 */
async function bundle(cwd: string, name: string): Promise<string> {
  const outdir = mkdtempSync(join(ROOT, 'dist', `saturation-${name}-`))
  const wrangler = startWrangler(['deploy', '--dry-run', '--outdir', outdir], { cwd })
  await waitForLine(wrangler.process, /(--dry-run: exiting now)/, 120_000)
  await stopChild(wrangler.process)
  const script = join(outdir, 'index.js')
  const missing = missingSiblings(script)
  if (missing.length > 0) throw new Error(`the ${name} bundle lacks ${missing.join(', ')}`)
  return script
}

/**
 * The two builds: the working tree's, and BASELINE_COMMIT's, its sources exported with `git archive`
 * into dist/ (where esbuild resolves their packages from this tree's node_modules) and bundled with
 * this tree's wrangler. `cleanup` removes what was made.
 */
async function buildBoth(): Promise<{ queue: string; before: string; cleanup: () => void }> {
  mkdirSync(join(ROOT, 'dist'), { recursive: true })
  const made: string[] = []
  const cleanup = () => {
    for (const dir of made) rmSync(dir, { recursive: true, force: true })
  }
  try {
    const queue = await bundle(ROOT, 'queue')
    made.push(dirname(queue))
    const source = mkdtempSync(join(ROOT, 'dist', 'saturation-before-src-'))
    made.push(source)
    const archive = execFileSync('git', ['archive', BASELINE_COMMIT, 'src', 'wrangler.toml', 'package.json', 'tsconfig.json'], {
      cwd: ROOT,
      maxBuffer: 256 * 1024 * 1024,
    })
    execFileSync('tar', ['-x', '-C', source], { input: archive })
    const before = await bundle(source, 'before')
    made.push(dirname(before))
    return { queue, before, cleanup }
  } catch (error) {
    cleanup()
    throw error
  }
}

/** One request: the first turn of a new conversation, its stream read to the end at once. */
async function send(gatewayUrl: string, role: Role, begin: number, signal: AbortSignal): Promise<Outcome> {
  const sentAt = performance.now()
  let ttftMs: number | null = null
  let headersMs: number | null = null
  let status: number | null = null
  const done = (outcome: string): Outcome => ({
    role,
    sentMs: round(sentAt - begin),
    endMs: round(performance.now() - begin),
    status,
    outcome,
    headersMs: headersMs === null ? null : round(headersMs),
    ttftMs: ttftMs === null ? null : round(ttftMs),
  })
  try {
    const response = await fetch(`${gatewayUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEYS[role].secret}` },
      body: JSON.stringify(conversationTurn(newConversation())),
      signal,
    })
    status = response.status
    headersMs = performance.now() - sentAt
    if (!response.ok || !response.body) return done(answerOutcome(status, await response.text()) ?? `status ${status}`)
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    for (;;) {
      const { value, done: ended } = await reader.read()
      if (ended) break
      text += value
      if (ttftMs === null && text.includes('data: {"id"')) ttftMs = performance.now() - sentAt
    }
    return done(answerOutcome(200, text) ?? 'stream cut')
  } catch {
    return done(signal.aborted ? 'cut at the drain limit' : ttftMs === null ? 'fetch failed' : 'stream failed')
  }
}

/** One phase on one gateway: each key's Poisson arrivals at its rate for PHASE_MS, then the drain. */
async function runPhase(gatewayUrl: string, backends: RunningEmulator[], rates: Partial<Record<Role, number>>) {
  checkTime()
  await waitIdle(backends)
  await Promise.all(backends.map((b) => fetch(`${b.url}/emulator/reset`, { method: 'POST' })))
  const cut = new AbortController()
  const pending: Promise<void>[] = []
  const outcomes: Outcome[] = []
  const unsent: Partial<Record<Role, number>> = {}
  let inFlight = 0
  const begin = performance.now()
  // The backends' completed generations over the phase's arrivals (a cross-check of the client's count).
  const atPhaseEnd = sleep(PHASE_MS).then(() => backendStats(backends))
  const arrivals = Object.entries(rates).map(async ([role, rate]) => {
    let next = begin
    for (;;) {
      next += -Math.log(1 - Math.random()) * (1000 / rate)
      if (next - begin >= PHASE_MS) return
      const wait = next - performance.now()
      if (wait > 0) await sleep(wait)
      if (inFlight >= MAX_IN_FLIGHT) {
        unsent[role as Role] = (unsent[role as Role] ?? 0) + 1
        continue
      }
      inFlight++
      pending.push(
        send(gatewayUrl, role as Role, begin, cut.signal).then((outcome) => {
          inFlight--
          outcomes.push(outcome)
        }),
      )
    }
  })
  await Promise.all(arrivals)
  const timer = setTimeout(() => cut.abort(), DRAIN_LIMIT_MS)
  await Promise.all(pending)
  clearTimeout(timer)
  const drainMs = round(performance.now() - begin - PHASE_MS, 0)
  const stats = await atPhaseEnd
  // The machine's 1-minute load average at the phase's end: other work on a shared machine shows here.
  const load = round(loadavg()[0] as number)
  // The longest waiting queue a backend (vLLM) held, over the phase and its drain.
  const maxWaiting = Math.max(...(await backendStats(backends)).map((s) => s.maxWaiting))
  return {
    outcomes,
    unsent,
    backendCompleted: stats.reduce((sum, s) => sum + s.completed, 0),
    backendMaxWaiting: maxWaiting,
    drainMs,
    load,
  }
}

interface BackendStats {
  running: number
  waiting: number
  maxWaiting: number
  completed: number
}

async function backendStats(backends: RunningEmulator[]): Promise<BackendStats[]> {
  return Promise.all(backends.map(async (b) => (await (await fetch(`${b.url}/emulator/stats`)).json()) as BackendStats))
}

/** Until no backend runs or queues anything (the previous phase's requests all ended). */
async function waitIdle(backends: RunningEmulator[]): Promise<void> {
  const deadline = Date.now() + IDLE_LIMIT_MS
  for (;;) {
    const stats = await backendStats(backends)
    if (stats.every((s) => s.running === 0 && s.waiting === 0)) break
    if (Date.now() > deadline) throw new Error('the backends did not become idle between phases')
    await sleep(200)
  }
  // The gateways' releases to the slot ledger trail the streams' ends.
  await sleep(500)
}

async function main(): Promise<void> {
  const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
  const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
  console.error(`building the queue build (working tree at ${head}${dirty ? ', src/ modified' : ''}) and ${BASELINE_COMMIT}`)
  const builds = await buildBoth()
  const gateways = new Map<Build, ServedWorker>()
  let backends: RunningEmulator[] = []
  try {
    backends = await startBackends(['--scheduling-policy', 'priority'])
    const keys = Object.entries(KEYS).map(([role, key]) => ({
      secret: key.secret,
      fields: { name: role, limits: ROOMY_LIMITS, scopes: ['chat' as const], priority: key.priority, weight: key.weight },
    }))
    const vars = gatewayVars('smart', backends)
    gateways.set('before', await serveIsolates(builds.before, vars, { isolates: ISOLATES, keys }))
    gateways.set('queue', await serveIsolates(builds.queue, vars, { isolates: ISOLATES, keys }))
    const url = (build: Build) => (gateways.get(build) as ServedWorker).url
    // The fleet's capacity, once: closed loop, as many clients as the fleet has slots, through the
    // build before the queue (a standard key: it may fill every slot in both builds).
    await waitIdle(backends)
    const capacity = await measureCapacity(url('before'), KEYS['standard-a'].secret)
    console.error(`capacity: ${round(capacity)} requests/s`)
    const runs: RunRecord[] = []
    for (let run = 0; run < RUNS; run++) {
      const record: RunRecord = {}
      const order = run % 2 === 0 ? BUILDS : [...BUILDS].reverse()
      for (const [phase, shares] of Object.entries(PHASES) as [Phase, Partial<Record<Role, number>>][]) {
        for (const build of order) {
          const rates = Object.fromEntries(Object.entries(shares).map(([role, share]) => [role, share * capacity]))
          const result = await runPhase(url(build), backends, rates)
          ;(record[build] ??= {})[phase] = result
          const served = result.outcomes.filter((o) => o.outcome === 'complete').length
          console.error(
            `run ${run + 1}/${RUNS} ${phase} ${build}: ${result.outcomes.length} requests, ${served} complete, drain ${result.drainMs} ms`,
          )
        }
      }
      runs.push(record)
    }
    const setup: Setup = {
      baselineCommit: BASELINE_COMMIT,
      queueBuild: `${head}${dirty ? ' + uncommitted src/' : ''}`,
      capacity,
      runs: RUNS,
      isolates: ISOLATES,
      phaseMs: PHASE_MS,
      maxNumSeqs: MAX_NUM_SEQS,
      maxInFlight: MAX_IN_FLIGHT,
      phases: PHASES,
      elapsedS: round((Date.now() - startedAt) / 1000, 0),
      records: runs,
    }
    // Every request's outcome, for a report written again from them (BENCH_REPORT_FROM); not committed.
    mkdirSync(join(ROOT, 'bench/out'), { recursive: true })
    writeFileSync(RAW_FILE, JSON.stringify(setup))
    report(setup)
  } finally {
    await Promise.all([...gateways.values()].map((g) => g.dispose()))
    await Promise.all(backends.map((b) => b.stop()))
    builds.cleanup()
  }
}

// BENCH_REPORT_FROM=bench/out/saturation-raw.json: the report again from a run's outcomes, without running.
const reportFrom = process.env.BENCH_REPORT_FROM
if (reportFrom) report(JSON.parse(readFileSync(reportFrom, 'utf8')) as Setup)
else await main()
