// npm run bench:poison: can one key's poison requests take the fleet from other keys? The four
// emulated backends of bench/fleet.ts (bench/fleet-traffic.ts's load model), each also spending
// PREPROCESS_MS_PER_TOKEN ms per prompt token before its response headers (vLLM renders and
// tokenizes first), behind the gateway with rate limits on, over 1 and 8 isolates
// (BENCH_ISOLATES). A steady key (roomy limits) sends open-loop multi-turn conversation turns at 50%
// of the fleet's measured capacity; in the poison phases a second key, at the default limits
// (60 requests/minute, 8 streams), also sends closed loop, 8 in flight, a hanging request and a
// ~3,400-token prompt whose preprocessing outlasts the 3 s headers deadline, in turn. Baseline and
// poison phases (BENCH_PHASE_MS each) alternate over BENCH_RUNS runs. Reported: the steady key's
// success rate and TTFT against its baseline, what the poison key got, and each backend's seconds
// out of rotation. Scenario 2: the steady key alone while every backend's API server lags 4 s
// (apiServerLagMs) for 10 s: the 503s and the time back to normal. BENCH_GATEWAY_BUNDLE serves a
// built bundle instead of building the working tree. Writes bench/results/<BENCH_RESULTS_NAME,
// default poison>.{json,md}. Bounded: fixed phases, drain limits, a whole-run time limit.
import { resolve } from 'node:path'
import { unstable_readConfig } from 'wrangler'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, serveIsolates, type RunningEmulator, type ServedWorker } from '../scripts/stack.ts'
import { ROOMY_LIMITS, gatewayVars, measureCapacity, resetBackends, runLoad, startBackends, type Outcome } from './fleet-traffic.ts'
import { newConversation, type Conversation } from './fleet-workload.ts'
import { report, type LagResult, type PhaseRecord, type Setup } from './poison-report.ts'
import { runPoison, slowPromptTokens, watchRotation } from './poison-traffic.ts'
import { round } from './stats.ts'

const numbers = (text: string) => text.split(',').map(Number)
const ISOLATES = numbers(process.env.BENCH_ISOLATES ?? '1,8')
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 20_000)
const RUNS = Number(process.env.BENCH_RUNS ?? 2)
const RESULTS_NAME = process.env.BENCH_RESULTS_NAME ?? 'poison'
const BUNDLE = process.env.BENCH_GATEWAY_BUNDLE
/**
 * BENCH_CAPACITY: requests/s taken as the capacity instead of measuring it, so that two builds
 * measured one after the other get the same load on a machine whose probe varies run to run.
 */
const GIVEN_CAPACITY = process.env.BENCH_CAPACITY ? Number(process.env.BENCH_CAPACITY) : null
/** What the results call the gateway served (default: the bundle's path, or the working tree). */
const LABEL = process.env.BENCH_GATEWAY_LABEL ?? BUNDLE ?? 'working tree (built now)'
/** Scenario 2's length and its lag (BENCH_LAG_MS=0 skips it): on at LAG_FROM_MS, off at LAG_TO_MS. */
const LAG_RUN_MS = Number(process.env.BENCH_LAG_MS ?? 30_000)
const LAG_FROM_MS = 5_000
const LAG_TO_MS = 15_000
const API_SERVER_LAG_MS = 4_000
/** The steady key's load: this share of the measured capacity. */
const LEVEL = 0.5
/**
 * Preprocessing before the headers, ms per prompt token, the same in every phase: the slow
 * shape's ~3,400 tokens take ~3.4 s, past the 3 s headers deadline; the steady key's prompts
 * (~50-100 tokens, below) ~0.1 s.
 */
const PREPROCESS_MS_PER_TOKEN = 1
/**
 * The steady key's conversations open with the first this many characters of bench:fleet's
 * opening document (~45 tokens rather than ~410): at 1 ms per token of preprocessing the
 * full one would put ~0.4 s before every first token and hide the poison's effect behind it.
 */
const STEADY_OPENING_CHARS = 240
const POISON_CONCURRENCY = 8
const WARM_UP_MS = 4_000
const TIME_LIMIT_MS = 20 * 60_000
const STEADY_KEY = `sk-${'s'.repeat(43)}`
const POISON_KEY = `sk-${'p'.repeat(43)}`
const startedAt = Date.now()

const vars = unstable_readConfig({ config: resolve(ROOT, 'wrangler.toml') }).vars as Record<string, string>
/** The gateway's circuit cool-down and headers deadline, as served (wrangler.toml). */
const COOLDOWN_MS = Number(vars.CIRCUIT_COOLDOWN_MS)
const HEADERS_TIMEOUT_MS = Number(vars.UPSTREAM_HEADERS_TIMEOUT_MS)

function checkTime(): void {
  if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error('poison benchmark exceeded its time limit')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function steadyConversation(): Conversation {
  const conversation = newConversation()
  conversation.opening = `${conversation.opening.slice(0, STEADY_OPENING_CHARS)}. Summarize it.`
  return conversation
}

/** One phase: the steady key's load, with or without the poison key, and the rotation monitor. */
async function runPhase(gateway: ServedWorker, backends: RunningEmulator[], rate: number, poison: boolean): Promise<PhaseRecord> {
  checkTime()
  await resetBackends(backends)
  const rotation = watchRotation(backends)
  const outOfRotation = sleep(PHASE_MS).then(() => rotation.stop())
  const stop = new AbortController()
  const cut = new AbortController()
  const stopTimer = setTimeout(() => stop.abort(), PHASE_MS)
  const poisoned = poison ? runPoison(gateway.url, POISON_KEY, POISON_CONCURRENCY, stop.signal, cut.signal) : Promise.resolve([])
  let steady: Outcome[]
  try {
    steady = await runLoad(gateway.url, STEADY_KEY, rate, PHASE_MS, undefined, steadyConversation)
  } finally {
    // Poison requests still running once the steady key's last turn is done are cut.
    clearTimeout(stopTimer)
    stop.abort()
    cut.abort()
  }
  return { steady, poison: await poisoned, outOfRotationS: (await outOfRotation).map((s) => round(s)) }
}

/** Patches every backend's options (POST /emulator/config, answered at once, whatever the lag). */
async function configure(backends: RunningEmulator[], patch: Record<string, number>): Promise<void> {
  await Promise.all(
    backends.map(async (b) => {
      const response = await fetch(`${b.url}/emulator/config`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(patch),
        signal: AbortSignal.timeout(5_000),
      })
      if (!response.ok) throw new Error(`emulator config ${JSON.stringify(patch)}: ${response.status} ${await response.text()}`)
    }),
  )
}

/** Scenario 2: the steady key alone; every backend's API server lags 4 s from LAG_FROM_MS to LAG_TO_MS. */
async function lagScenario(gateway: ServedWorker, backends: RunningEmulator[], rate: number): Promise<LagResult> {
  checkTime()
  await resetBackends(backends)
  const begin = performance.now()
  const answered: Record<string, number> = {}
  const switchAt = (at: number, ms: number, name: string) =>
    sleep(at).then(async () => {
      await configure(backends, { apiServerLagMs: ms })
      answered[name] = round(performance.now() - begin)
    })
  const on = switchAt(LAG_FROM_MS, API_SERVER_LAG_MS, 'on')
  const off = switchAt(LAG_TO_MS, 0, 'off')
  try {
    const outcomes = await runLoad(gateway.url, STEADY_KEY, rate, LAG_RUN_MS, undefined, steadyConversation)
    await Promise.all([on, off])
    return { begin, outcomes, lagOnAnsweredMs: answered.on ?? null, lagOffAnsweredMs: answered.off ?? null }
  } finally {
    await Promise.allSettled([on, off])
    await configure(backends, { apiServerLagMs: 0 })
  }
}

/**
 * The engines' capacity, measured without preprocessing: with it, the probe's closed-loop clients
 * would spend part of each turn outside the backends' slots and leave them idle.
 */
async function probeCapacity(backends: RunningEmulator[], serve: (isolates: number) => Promise<ServedWorker>): Promise<number> {
  await configure(backends, { preprocessMsPerToken: 0 })
  const probe = await serve(1)
  const capacity = await measureCapacity(probe.url, STEADY_KEY, steadyConversation).finally(() => probe.dispose())
  await configure(backends, { preprocessMsPerToken: PREPROCESS_MS_PER_TOKEN })
  return capacity
}

async function main(): Promise<void> {
  const script = BUNDLE ? resolve(BUNDLE) : await buildWorker()
  const backends = await startBackends(['--preprocess-ms-per-token', String(PREPROCESS_MS_PER_TOKEN)])
  const keys = [
    { secret: STEADY_KEY, fields: { limits: ROOMY_LIMITS, scopes: ['chat' as const] } },
    // The default limits (wrangler.toml DEFAULT_*): null follows the deployment.
    { secret: POISON_KEY, fields: { scopes: ['chat' as const] } },
  ]
  const serve = (isolates: number) => serveIsolates(script, { ...gatewayVars('smart', backends), RATE_LIMITS: 'on' }, { isolates, keys })
  let gateway: ServedWorker | null = null
  try {
    const slowTokens = await slowPromptTokens(backends[0] as RunningEmulator)
    if (slowTokens > 3_500 || slowTokens * PREPROCESS_MS_PER_TOKEN <= HEADERS_TIMEOUT_MS) {
      throw new Error(`the slow prompt has ${slowTokens} tokens: it must fit under 3,500 and outlast the headers deadline`)
    }
    const capacity = GIVEN_CAPACITY ?? (await probeCapacity(backends, serve))
    console.error(`capacity: ${round(capacity)} requests/s${GIVEN_CAPACITY === null ? '' : ' (given)'}; slow prompt: ${slowTokens} tokens`)
    const phases: Record<string, { baseline: PhaseRecord; poison: PhaseRecord }[]> = {}
    const lag: Record<string, LagResult> = {}
    for (const isolates of ISOLATES) {
      gateway = await serve(isolates)
      await runLoad(gateway.url, STEADY_KEY, capacity * LEVEL, WARM_UP_MS, undefined, steadyConversation)
      for (let run = 0; run < RUNS; run++) {
        const baseline = await runPhase(gateway, backends, capacity * LEVEL, false)
        const poison = await runPhase(gateway, backends, capacity * LEVEL, true)
        ;(phases[String(isolates)] ??= []).push({ baseline, poison })
        console.error(`${isolates} isolate(s): run ${run + 1}/${RUNS} done`)
        // Circuits the poison opened close again before the next phase.
        await sleep(COOLDOWN_MS + 2_000)
      }
      if (LAG_RUN_MS > 0) {
        lag[String(isolates)] = await lagScenario(gateway, backends, capacity * LEVEL)
        console.error(`${isolates} isolate(s): lag scenario done`)
      }
      await gateway.dispose()
      gateway = null
    }
    const setup: Setup = {
      name: RESULTS_NAME,
      bundle: LABEL,
      capacity,
      capacityGiven: GIVEN_CAPACITY !== null,
      level: LEVEL,
      runs: RUNS,
      phaseMs: PHASE_MS,
      preprocessMsPerToken: PREPROCESS_MS_PER_TOKEN,
      slowPromptTokens: slowTokens,
      steadyOpeningChars: STEADY_OPENING_CHARS,
      poisonConcurrency: POISON_CONCURRENCY,
      cooldownMs: COOLDOWN_MS,
      headersTimeoutMs: HEADERS_TIMEOUT_MS,
      lag: { runMs: LAG_RUN_MS, fromMs: LAG_FROM_MS, toMs: LAG_TO_MS, lagMs: API_SERVER_LAG_MS },
      elapsedS: 0,
    }
    setup.elapsedS = round((Date.now() - startedAt) / 1000, 0)
    report(setup, phases, lag)
  } finally {
    await gateway?.dispose()
    await Promise.all(backends.map((b) => b.stop()))
  }
}

await main()
