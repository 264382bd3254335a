// npm run bench: the gateway's streaming overhead, side by side in one run, against one emulator:
//   direct       the emulator itself (no Worker)
//   passthrough     a trivial Worker that returns the upstream response as is (the floor)
//   passthrough-js  the same, but each chunk passes through an identity TransformStream in JS
//                   (the floor for any Worker that inspects the stream, as a relay must)
//   gateway-bare    this Worker's relay without auth, validation and prompt normalization
//   gateway-nolimits this Worker with RATE_LIMITS=off (no admission)
//   gateway         this Worker
//   gateway-responses this Worker (the same process) on POST /v1/responses: the Responses sink
//   gateway-messages this Worker (the same process) on POST /v1/messages, x-api-key auth: the
//                   Anthropic Messages sink
//   gateway-budgets this Worker (the same process) with a key that has day and month token budgets
//   gateway-distant this Worker as a caller far from its Durable Objects and KV sees it: every DO
//                   call and KV operation takes BENCH_RTT_MS (default 30) more (bench/distance-worker.ts)
//   gateway-distant-wait  the same with SPECULATIVE_ADMISSION=off: every request waits for its admission
// Every Worker is a built bundle served by its own workerd process through Miniflare, never through
// wrangler dev; that process's CPU time per relayed event is measured next to the latencies.
// Writes bench/results/<BENCH_OUT>.json and .md (default relay-overhead). Bounded in count and time.
// Then the memory part (bench/memory.ts): memory per open stream for passthrough, passthrough-js
// and gateway, with up to 3,000 streams held open, into bench/results/memory.json and .md
// (<BENCH_OUT>-memory with another BENCH_OUT). BENCH_MEMORY=off skips it, BENCH_MEMORY=only runs
// only it; BENCH_MEMORY_ROUNDS (default BENCH_RUNS), BENCH_MEMORY_STEPS (500,1000,2000,3000),
// BENCH_MEMORY_PROMPT_CHARS (the prompt's length; default the bare 106-character question) and
// BENCH_MEMORY_VARIANTS (gateway-nolimits, gateway-noledger, gateway-bare as more targets),
// BENCH_MEMORY_HOLD_MS (hold the last step this long and read again; default 0).
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, serveWorker, spawnEmulator, type ServeOptions, type ServedWorker } from '../scripts/stack.ts'
import { runPool, timeStream, type EventKind, type StreamSample } from './client.ts'
import { treeCpuSeconds, withNewChild } from './cpu.ts'
import { measureMemory, memorySteps, reportMemoryFrom, type MemoryTarget } from './memory.ts'
import { report, summarize, type LevelResult, type TargetName, type Throughput } from './report.ts'
import { percentile, round } from './stats.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
/** Results file name under bench/results/, without extension. */
const OUT = process.env.BENCH_OUT ?? 'relay-overhead'
if (!/^[\w.-]+$/.test(OUT)) throw new Error(`BENCH_OUT must be a plain file name, got ${OUT}`)
const ALL_LEVELS = [
  { concurrency: 1, requests: 30 },
  { concurrency: 16, requests: 96 },
  { concurrency: 64, requests: 192 },
]
/** BENCH_LEVELS=1 (a comma list of concurrencies) runs only those levels: a quick distance check. */
const LEVELS = process.env.BENCH_LEVELS
  ? ALL_LEVELS.filter((level) => (process.env.BENCH_LEVELS ?? '').split(',').map(Number).includes(level.concurrency))
  : ALL_LEVELS
if (LEVELS.length === 0) throw new Error(`BENCH_LEVELS names none of ${ALL_LEVELS.map((level) => level.concurrency).join(', ')}`)
/** BENCH_MEMORY=off skips the memory part (bench/memory.ts), BENCH_MEMORY=only runs nothing else. */
const MEMORY = process.env.BENCH_MEMORY ?? 'on'
if (!['on', 'off', 'only'].includes(MEMORY)) throw new Error(`BENCH_MEMORY must be on, off or only, got ${MEMORY}`)
const MEMORY_ROUNDS = Number(process.env.BENCH_MEMORY_ROUNDS ?? RUNS)
if (!(Number.isInteger(MEMORY_ROUNDS) && MEMORY_ROUNDS >= 1 && MEMORY_ROUNDS <= 20)) throw new Error('BENCH_MEMORY_ROUNDS must be 1 to 20')
/** BENCH_MEMORY_VARIANTS=gateway-nolimits,gateway-noledger,gateway-bare: the gateway with parts off, as more memory targets. */
const MEMORY_VARIANTS = (process.env.BENCH_MEMORY_VARIANTS ?? '').split(',').filter(Boolean)
/** BENCH_THROUGHPUT=off skips the one-stream throughput runs. */
const THROUGHPUT = process.env.BENCH_THROUGHPUT !== 'off'
/** The round trip added to each Durable Object call and KV operation of gateway-distant. */
const RTT_MS = Number(process.env.BENCH_RTT_MS ?? 30)
if (!(RTT_MS >= 0)) throw new Error(`BENCH_RTT_MS must be a number of ms >= 0, got ${process.env.BENCH_RTT_MS}`)
// 5,000 tokens: cut from 20,000 while the emulator's detokenizer was quadratic (20,000 took ~22 s).
// It is linear again (20,000 in about 0.5 s); 5,000 keeps the figures comparable with earlier runs
// (docs/benchmarks.md).
const THROUGHPUT_TOKENS = 5_000
const THROUGHPUT_MAX_TOKENS = 30_000
/** The emulator's context, and the gateway's MAX_MODEL_LEN: room for the throughput stream. */
const MAX_MODEL_LEN = 32_768
const TIME_LIMIT_MS = 15 * 60_000
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const KEY = 'bench-backend-key'
/** The gateway's API key for the benchmark client (the pass-throughs ignore it). */
const CLIENT_KEY = `sk-${'b'.repeat(43)}`
/** The gateway's key with token budgets per day and month (issue 31), too large to be reached here. */
const BUDGET_KEY = `sk-${'g'.repeat(43)}`
/** BENCH_TTFT_MS changes the emulator's time to first token (default 20). */
const EMULATOR = { ttftMs: Number(process.env.BENCH_TTFT_MS ?? 20), itlMs: 5, reasoningTokens: 24, contentTokens: 16 }

/**
 * Work a target still does for a level after its last stream ended (settling admissions, writing
 * traces, the limiter's batched storage writes every 250 ms) belongs to that level's CPU: the
 * CPU window closes this long after the last event. Nothing signals that workerd is idle.
 */
const CPU_SETTLE_MS = 300

/** Limits the benchmark never reaches, so admission is measured and never refuses. */
const ROOMY_LIMITS = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 1_000, maxOutputTokens: null }

interface Target {
  name: TargetName
  url: string
  /** The Authorization the target expects: the backend key, or the gateway's own API key. */
  key: string
  /** The processes whose CPU is this target's: its workerd, or the emulator for direct. */
  cpuPids: number[]
  /** The API it is called on: chat completions, the Responses API (gateway-responses) or Messages (gateway-messages). */
  api?: EventKind
}

const startedAt = Date.now()
function checkTime(): void {
  if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error(`benchmark exceeded ${TIME_LIMIT_MS / 60_000} minutes`)
}

function chatRequest(prompt: string) {
  return { model: MODEL, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: prompt }] }
}

/**
 * The Messages API requires max_tokens: when the chat request sets none, a cap far above the
 * emulator's generation (40 tokens), so both ask for the same one.
 */
const MESSAGES_MAX_TOKENS = 1024

/** One streamed request to a target, on its API: the same prompt and output cap either way. */
function timeTarget(target: Target, prompt: string, maxTokens?: number): Promise<StreamSample> {
  const headers = { authorization: `Bearer ${target.key}` }
  if (target.api === 'messages') {
    // thinking adaptive: the reasoning is shown as thinking blocks, as chat shows reasoning_content.
    const body = {
      model: MODEL,
      stream: true,
      max_tokens: maxTokens ?? MESSAGES_MAX_TOKENS,
      thinking: { type: 'adaptive' },
      messages: [{ role: 'user', content: prompt }],
    }
    return timeStream(`${target.url}/v1/messages`, body, { 'x-api-key': target.key }, 'messages')
  }
  if (target.api === 'responses') {
    const body = { model: MODEL, stream: true, input: prompt, ...(maxTokens ? { max_output_tokens: maxTokens } : {}) }
    return timeStream(`${target.url}/v1/responses`, body, headers, 'responses')
  }
  return timeStream(
    `${target.url}/v1/chat/completions`,
    { ...chatRequest(prompt), ...(maxTokens ? { max_tokens: maxTokens } : {}) },
    headers,
  )
}

async function eventTimes(emulatorUrl: string, id: string): Promise<number[]> {
  const response = await fetch(`${emulatorUrl}/emulator/event-times?id=${encodeURIComponent(id)}`)
  if (!response.ok) throw new Error(`no event times for ${id}`)
  return ((await response.json()) as { times: number[] }).times
}

/** The emulator every target streams from: its URL, and its pid for its share of the CPU. */
interface Upstream {
  url: string
  pid: number
}

async function measureLevel(target: Target, upstream: Upstream, concurrency: number, requests: number): Promise<LevelResult> {
  const cpuAtStart = { target: treeCpuSeconds(target.cpuPids), emulator: treeCpuSeconds([upstream.pid]) }
  const samples: StreamSample[] = await runPool(requests, concurrency, () => timeTarget(target, 'Benchmark prompt: what is 7 * 6?'))
  await sleep(CPU_SETTLE_MS)
  // Read before the event-times lookups below, which would charge the emulator for bookkeeping.
  const cpu = { target: treeCpuSeconds(target.cpuPids) - cpuAtStart.target, emulator: treeCpuSeconds([upstream.pid]) - cpuAtStart.emulator }
  const events = samples.reduce((sum, sample) => sum + sample.arrivals.length, 0)
  const ttfe = samples.map((sample) => (sample.arrivals[0] ?? Number.NaN) - sample.sentAt)
  const lags: number[] = []
  for (const sample of samples.filter((s) => s.id !== '')) {
    const sent = await eventTimes(upstream.url, sample.id)
    sample.arrivals.forEach((arrival, i) => {
      const sendTime = sent[i]
      if (sendTime !== undefined) lags.push(arrival - sendTime)
    })
  }
  return {
    ttfe_p50: percentile(ttfe, 50),
    ttfe_p99: percentile(ttfe, 99),
    lag_p50: percentile(lags, 50),
    lag_p99: percentile(lags, 99),
    cpu_us_per_event: (cpu.target * 1e6) / events,
    emulator_cpu_us_per_event: (cpu.emulator * 1e6) / events,
    events,
  }
}

async function measureThroughput(target: Target): Promise<Throughput> {
  const prompt = `[emulator itl_ms=0 ttft_ms=0 reasoning_tokens=${THROUGHPUT_TOKENS} content_tokens=16]`
  const sample = await timeTarget(target, prompt, THROUGHPUT_MAX_TOKENS)
  const seconds = ((sample.arrivals.at(-1) ?? 0) - sample.sentAt) / 1000
  return { events_per_s: sample.arrivals.length / seconds, mib_per_s: sample.bytes / 1024 / 1024 / seconds }
}

function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length] as T)
}

/** Serves a Worker and learns the pid of the workerd process Miniflare starts for it. */
async function serveTracked(
  served: ServedWorker[],
  script: string,
  vars: Record<string, string>,
  options?: ServeOptions,
): Promise<{ url: string; pid: number }> {
  const { value, pid } = await withNewChild('workerd', () => serveWorker(script, vars, options))
  served.push(value)
  return { url: value.url, pid }
}

interface Scripts {
  gateway: string
  bare: string
  distant: string
}

async function serveTargets(served: ServedWorker[], scripts: Scripts, upstream: Upstream): Promise<Target[]> {
  const keys = [
    { secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS } },
    { secret: BUDGET_KEY, fields: { limits: { ...ROOMY_LIMITS, budgetDay: 1e12, budgetMonth: 1e13 } } },
  ]
  // The emulator's context (--max-model-len, below): the gateway's default of 4096 would refuse the
  // throughput stream's max_tokens at the edge (src/schema/context-budget.ts).
  const backend = { BACKEND_URLS: upstream.url, BACKEND_API_KEY: KEY, MAX_MODEL_LEN: String(MAX_MODEL_LEN) }
  // One at a time: each new workerd child is told apart from the others by appearing during its call.
  const gateway = await serveTracked(served, scripts.gateway, backend, { keys })
  const gatewayNoLimits = await serveTracked(served, scripts.gateway, { ...backend, RATE_LIMITS: 'off' }, { keys })
  const distance = { BENCH_DO_RTT_MS: String(RTT_MS), BENCH_KV_RTT_MS: String(RTT_MS) }
  const gatewayDistant = await serveTracked(served, scripts.distant, { ...backend, ...distance }, { keys })
  const waiting = { ...backend, ...distance, SPECULATIVE_ADMISSION: 'off' }
  const gatewayDistantWait = await serveTracked(served, scripts.distant, waiting, { keys })
  const passthrough = await serveTracked(served, join(ROOT, 'bench/passthrough-worker.js'), { UPSTREAM: upstream.url }, { limiter: false })
  const passthroughJs = await serveTracked(
    served,
    join(ROOT, 'bench/passthrough-js-worker.js'),
    { UPSTREAM: upstream.url },
    { limiter: false },
  )
  const gatewayBare = await serveTracked(served, scripts.bare, backend)
  const target = (name: TargetName, { url, pid }: { url: string; pid: number }, key: string): Target => ({ name, url, key, cpuPids: [pid] })
  return [
    target('direct', upstream, KEY),
    target('passthrough', passthrough, KEY),
    target('passthrough-js', passthroughJs, KEY),
    target('gateway-bare', gatewayBare, KEY),
    target('gateway-nolimits', gatewayNoLimits, CLIENT_KEY),
    target('gateway', gateway, CLIENT_KEY),
    { ...target('gateway-responses', gateway, CLIENT_KEY), api: 'responses' },
    { ...target('gateway-messages', gateway, CLIENT_KEY), api: 'messages' },
    target('gateway-budgets', gateway, BUDGET_KEY),
    target('gateway-distant', gatewayDistant, CLIENT_KEY),
    target('gateway-distant-wait', gatewayDistantWait, CLIENT_KEY),
  ]
}

async function measureAll(targets: Target[], upstream: Upstream) {
  for (const target of targets) await measureLevel(target, upstream, 8, 32) // warm-up, not recorded
  const levels: Record<string, Record<string, LevelResult[]>> = {}
  const throughput: Record<string, Throughput[]> = {}
  for (let run = 0; run < RUNS; run++) {
    for (const { concurrency, requests } of LEVELS) {
      for (const target of rotate(targets, run)) {
        checkTime()
        ;((levels[concurrency] ??= {})[target.name] ??= []).push(await measureLevel(target, upstream, concurrency, requests))
      }
    }
    if (THROUGHPUT) for (const target of rotate(targets, run)) (throughput[target.name] ??= []).push(await measureThroughput(target))
    console.error(`run ${run + 1}/${RUNS} done`)
  }
  return { levels, throughput }
}

const load = () => loadavg().map((value) => round(value))

/**
 * The memory part's targets: the floors and the gateway with its default settings. The gateway's
 * one backend takes every stream (BACKEND_MAX_CONCURRENCY far above the streams held: at the
 * default 256 the edge queue would hold the rest), and the key's limits are roomy.
 */
function memoryTargets(scripts: Scripts, upstream: Upstream): MemoryTarget[] {
  const limits = { ...ROOMY_LIMITS, concurrentStreams: 100_000 }
  const backend = {
    BACKEND_URLS: upstream.url,
    BACKEND_API_KEY: KEY,
    MAX_MODEL_LEN: String(MAX_MODEL_LEN),
    BACKEND_MAX_CONCURRENCY: '100000',
  }
  const floor = (name: 'passthrough' | 'passthrough-js', file: string): MemoryTarget => ({
    name,
    script: join(ROOT, file),
    vars: { UPSTREAM: upstream.url },
    options: { limiter: false },
    key: KEY,
  })
  const options = { keys: [{ secret: CLIENT_KEY, fields: { limits } }] }
  const variants: MemoryTarget[] = [
    { name: 'gateway-nolimits', script: scripts.gateway, vars: { ...backend, RATE_LIMITS: 'off' }, options, key: CLIENT_KEY },
    { name: 'gateway-noledger', script: scripts.gateway, vars: { ...backend, SLOT_LEDGERS: 'off' }, options, key: CLIENT_KEY },
    { name: 'gateway-bare', script: scripts.bare, vars: backend, options: {}, key: KEY },
  ]
  return [
    floor('passthrough', 'bench/passthrough-worker.js'),
    floor('passthrough-js', 'bench/passthrough-js-worker.js'),
    { name: 'gateway', script: scripts.gateway, vars: backend, options, key: CLIENT_KEY },
    ...variants.filter((variant) => MEMORY_VARIANTS.includes(variant.name)),
  ]
}

async function main(): Promise<void> {
  const loadBefore = load()
  // The builds share dist/, so one after the other.
  const buildAll = async (): Promise<Scripts> => {
    const gateway = await buildWorker()
    const bare =
      MEMORY !== 'only' || MEMORY_VARIANTS.includes('gateway-bare')
        ? await buildWorker({ script: 'bench/bare-worker.ts', outdir: 'bare' })
        : ''
    if (MEMORY === 'only') return { gateway, bare, distant: '' }
    return { gateway, bare, distant: await buildWorker({ script: 'bench/distance-worker.ts', outdir: 'distance' }) }
  }
  const [scripts, emulator] = await Promise.all([
    buildAll(),
    spawnEmulator([
      '--served-model-name',
      MODEL,
      '--reasoning-parser',
      'deepseek_r1',
      '--api-key',
      KEY,
      '--record-event-times',
      // Room for the throughput stream: the default 4096 would end it after ~4,000 tokens.
      '--max-model-len',
      String(MAX_MODEL_LEN),
      '--ttft-ms',
      String(EMULATOR.ttftMs),
      '--itl-ms',
      String(EMULATOR.itlMs),
      '--reasoning-tokens',
      String(EMULATOR.reasoningTokens),
      '--content-tokens',
      String(EMULATOR.contentTokens),
    ]),
  ])
  const served: ServedWorker[] = []
  try {
    const upstream = { url: emulator.url, pid: emulator.process.pid ?? Number.NaN }
    if (MEMORY !== 'only') {
      const targets = await serveTargets(served, scripts, upstream)
      const { levels, throughput } = await measureAll(targets, upstream)
      const settings = {
        runs: RUNS,
        emulator: EMULATOR,
        throughputTokens: THROUGHPUT_TOKENS,
        distanceRttMs: RTT_MS,
        load: { before: loadBefore, after: load() },
      }
      report(summarize(levels, throughput, settings), join(ROOT, 'bench/results'), OUT)
      // The memory part serves its own processes: these would only share the machine with them.
      await Promise.all(served.splice(0).map((worker) => worker.dispose()))
    }
    if (MEMORY !== 'off') {
      const settings = {
        model: MODEL,
        promptChars: Number(process.env.BENCH_MEMORY_PROMPT_CHARS ?? 0),
        holdMs: Number(process.env.BENCH_MEMORY_HOLD_MS ?? 0),
        upstream: { url: upstream.url },
        rounds: MEMORY_ROUNDS,
        steps: memorySteps(process.env.BENCH_MEMORY_STEPS),
      }
      await measureMemory(memoryTargets(scripts, upstream), settings, OUT === 'relay-overhead' ? 'memory' : `${OUT}-memory`)
    }
  } finally {
    await Promise.all([...served.map((worker) => worker.dispose()), emulator.stop()])
  }
}

// BENCH_MEMORY_REPORT_FROM=bench/results/memory.json writes the memory part's report again from a run's .json, running nothing.
if (process.env.BENCH_MEMORY_REPORT_FROM)
  reportMemoryFrom(process.env.BENCH_MEMORY_REPORT_FROM, OUT === 'relay-overhead' ? 'memory' : `${OUT}-memory`)
else await main()
