// npm run bench:frozen: one of two backends frozen (SIGSTOP: the process stopped, its socket still
// accepting) under steady open-loop load. Measures the time to first data of the requests sent
// after the freeze (p50/p99/max, and the same after the first few), and how many requests still
// reached the frozen backend, counted by a TCP proxy in front of it (a stopped process cannot
// count). Target (issue 18): after the first few, no request waits more than the headers deadline
// plus one normal TTFT. Writes bench/results/frozen-backend.{json,md}. Bounded: fixed phases, a
// deadline per request, RUNS runs (BENCH_RUNS, default 3).
import { writeFileSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, serveWorker, spawnEmulator, type RunningEmulator } from '../scripts/stack.ts'
import { median, percentile, round } from './stats.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const RATE = Number(process.env.BENCH_RATE ?? 8)
const WARMUP_MS = 3_000
/** Long enough for several cool-downs (10 s) and probes, and past the 30 s first-event deadline. */
const FROZEN_MS = Number(process.env.BENCH_FROZEN_MS ?? 45_000)
const REQUEST_LIMIT_MS = 40_000
/** wrangler.toml's UPSTREAM_HEADERS_TIMEOUT_MS: the bound measured against. */
const HEADERS_MS = 3_000
/**
 * Side by side in each run: the defaults; the defaults with round-robin routing (which, unlike
 * "smart", would keep sending the frozen backend half the traffic if nothing found it out); and
 * the first-event deadline alone (a headers deadline equal to it never fires first; the stall
 * ranking stays, at 10 s, so this is kinder than the code before issue 18 was).
 */
const VARIANTS = {
  'headers-deadline': {},
  'headers-deadline, round robin': { ROUTING_POLICY: 'round_robin' },
  'first-event-only': { UPSTREAM_HEADERS_TIMEOUT_MS: '30000' },
} as const
type Variant = keyof typeof VARIANTS
/** "The first few": requests sent within this long after the freeze may wait the full deadline. */
const FIRST_FEW_MS = HEADERS_MS
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const CLIENT_KEY = `sk-${'z'.repeat(43)}`
const ROOMY_LIMITS = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 10_000, maxOutputTokens: null }
const EMULATOR_ARGS = ['--served-model-name', MODEL, '--ttft-ms', '20', '--itl-ms', '5', '--reasoning-tokens', '4', '--content-tokens', '4']

interface Sample {
  /** Sent this long after the freeze (negative: before it). */
  sentAfterMs: number
  ttftMs: number | null
}

/** A TCP proxy to `target` that timestamps every chat request passing through it. */
async function countingProxy(target: string): Promise<{ url: string; arrivals: number[]; server: Server }> {
  const { hostname, port } = new URL(target)
  const arrivals: number[] = []
  const server = createServer((client) => {
    const upstream = connect({ host: hostname, port: Number(port) })
    client.on('data', (data: Buffer) => {
      // A request line starts a write of its own (workerd writes head and body separately).
      if (data.includes('POST /v1/chat/completions')) arrivals.push(performance.now())
      upstream.write(data)
    })
    upstream.pipe(client)
    const close = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('close', close).on('error', close)
    upstream.on('close', close).on('error', close)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  return { url: `http://127.0.0.1:${address.port}`, arrivals, server }
}

/** One streamed chat request: its time to the first data event, or null if none came. */
async function timeToFirstData(url: string): Promise<number | null> {
  const started = performance.now()
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
      body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: `Hello ${Math.random()}` }] }),
      signal: AbortSignal.timeout(REQUEST_LIMIT_MS),
    })
    if (!response.ok || !response.body) return null
    const decoder = new TextDecoder()
    let text = ''
    let first: number | null = null
    for await (const chunk of response.body) {
      text += decoder.decode(chunk, { stream: true })
      if (first === null && text.includes('data: {"id"')) first = performance.now() - started
    }
    return first
  } catch {
    return null
  }
}

interface RunResult {
  normalTtftP99Ms: number
  afterFreeze: { count: number; failed: number; p50Ms: number; p99Ms: number; maxMs: number }
  afterFirstFew: { count: number; p99Ms: number; maxMs: number; overBound: number }
  /** Requests that reached the frozen backend after the freeze, and when the last one in the first 5 s did. */
  reachedFrozen: number
  reachedFrozenFirst5s: number
  lastEarlyArrivalMs: number | null
  boundMs: number
}

async function oneRun(script: string, variant: Variant): Promise<RunResult> {
  const emulators: RunningEmulator[] = await Promise.all([spawnEmulator(EMULATOR_ARGS), spawnEmulator(EMULATOR_ARGS)])
  const proxies = await Promise.all(emulators.map((emulator) => countingProxy(emulator.url)))
  const worker = await serveWorker(
    script,
    { BACKEND_URLS: proxies.map((proxy) => proxy.url).join(','), ...VARIANTS[variant] },
    { keys: [{ secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS } }] },
  )
  const frozen = emulators[0] as RunningEmulator
  const samples: Promise<Sample>[] = []
  let frozenAt = Number.POSITIVE_INFINITY
  try {
    const begin = performance.now()
    let next = begin
    while (performance.now() - begin < WARMUP_MS + FROZEN_MS) {
      next += 1000 / RATE
      const wait = next - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      if (frozenAt === Number.POSITIVE_INFINITY && performance.now() - begin >= WARMUP_MS) {
        frozen.process.kill('SIGSTOP')
        frozenAt = performance.now()
      }
      const sentAt = performance.now()
      samples.push(timeToFirstData(worker.url).then((ttftMs) => ({ sentAfterMs: sentAt - frozenAt, ttftMs })))
    }
    const done = await Promise.all(samples)
    return summarizeRun(
      done,
      (proxies[0]?.arrivals ?? []).map((at) => at - frozenAt),
    )
  } finally {
    frozen.process.kill('SIGCONT')
    await worker.dispose()
    for (const proxy of proxies) proxy.server.close()
    await Promise.all(emulators.map((emulator) => emulator.stop()))
  }
}

function summarizeRun(samples: Sample[], frozenArrivals: number[]): RunResult {
  const before = samples.filter((s) => s.sentAfterMs < 0 && s.ttftMs !== null).map((s) => s.ttftMs as number)
  const after = samples.filter((s) => s.sentAfterMs >= 0)
  const afterTtft = after.filter((s) => s.ttftMs !== null).map((s) => s.ttftMs as number)
  const later = after.filter((s) => s.sentAfterMs >= FIRST_FEW_MS).map((s) => s.ttftMs ?? Number.POSITIVE_INFINITY)
  const normalTtftP99Ms = percentile(before, 99)
  const boundMs = HEADERS_MS + normalTtftP99Ms
  const reached = frozenArrivals.filter((at) => at >= 0)
  const early = reached.filter((at) => at < 5_000)
  return {
    normalTtftP99Ms: round(normalTtftP99Ms),
    afterFreeze: {
      count: after.length,
      failed: after.length - afterTtft.length,
      p50Ms: round(median(afterTtft)),
      p99Ms: round(percentile(afterTtft, 99)),
      maxMs: round(Math.max(...afterTtft)),
    },
    afterFirstFew: {
      count: later.length,
      p99Ms: round(percentile(later, 99)),
      maxMs: round(Math.max(...later)),
      overBound: later.filter((ms) => ms > boundMs).length,
    },
    reachedFrozen: reached.length,
    reachedFrozenFirst5s: early.length,
    lastEarlyArrivalMs: early.length > 0 ? round(Math.max(...early)) : null,
    boundMs: round(boundMs),
  }
}

function spreadOf(values: number[]): string {
  return `${round(median(values))} (${round(Math.min(...values))}-${round(Math.max(...values))})`
}

function markdown(results: Record<Variant, RunResult[]>): string {
  const variants = Object.keys(VARIANTS) as Variant[]
  const row = (name: string, pick: (run: RunResult) => number | null) =>
    `| ${name} | ${variants
      .map((variant) => {
        const runs = results[variant]
        return `${spreadOf(runs.map((run) => pick(run) ?? Number.NaN))} [${runs.map((run) => pick(run)).join(', ')}]`
      })
      .join(' | ')} |`
  return [
    '# Frozen backend (npm run bench:frozen)',
    '',
    `Two emulators, one stopped with SIGSTOP after ${WARMUP_MS} ms of steady load at ${RATE} requests/s, then ${FROZEN_MS} ms`,
    `more. \`headers-deadline\`: the defaults (UPSTREAM_HEADERS_TIMEOUT_MS ${HEADERS_MS}, FIRST_EVENT_TIMEOUT_MS 30000, circuit`,
    'cool-down 10 s, smart routing); the same with round-robin routing; `first-event-only`: UPSTREAM_HEADERS_TIMEOUT_MS',
    '30000: no headers deadline, but the stall ranking still applies (at 10 s), so this is kinder than before issue 18.',
    'Run side by side.',
    `"After the first few": requests sent ${FIRST_FEW_MS} ms or more after the freeze; the bound is the`,
    'headers deadline plus the p99 TTFT before the freeze. Figures: median of the runs (min-max) [each run].',
    `Measured ${new Date().toISOString()} on a shared 2-core machine (load average ${loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')} at the end).`,
    '',
    `| figure | ${variants.join(' | ')} |`,
    `|---|${variants.map(() => '---').join('|')}|`,
    row('TTFT p99 before the freeze (ms)', (r) => r.normalTtftP99Ms),
    row('requests sent after the freeze', (r) => r.afterFreeze.count),
    row('of them with no data (failed)', (r) => r.afterFreeze.failed),
    row('TTFT p50 after the freeze (ms)', (r) => r.afterFreeze.p50Ms),
    row('TTFT p99 after the freeze (ms)', (r) => r.afterFreeze.p99Ms),
    row('TTFT max after the freeze (ms)', (r) => r.afterFreeze.maxMs),
    row('TTFT p99 after the first few (ms)', (r) => r.afterFirstFew.p99Ms),
    row('TTFT max after the first few (ms)', (r) => r.afterFirstFew.maxMs),
    row('after the first few, over the bound', (r) => r.afterFirstFew.overBound),
    row('requests that reached the frozen backend', (r) => r.reachedFrozen),
    row('... in the first 5 s', (r) => r.reachedFrozenFirst5s),
    row('... last of those, ms after the freeze', (r) => r.lastEarlyArrivalMs),
    row('... after the first 5 s (probes)', (r) => r.reachedFrozen - r.reachedFrozenFirst5s),
    '',
  ].join('\n')
}

async function main(): Promise<void> {
  const script = await buildWorker()
  const variants = Object.keys(VARIANTS) as Variant[]
  const results = Object.fromEntries(variants.map((variant) => [variant, [] as RunResult[]])) as Record<Variant, RunResult[]>
  for (let i = 0; i < RUNS; i++) {
    for (const variant of variants) {
      results[variant].push(await oneRun(script, variant))
      console.log(`run ${i + 1}/${RUNS} ${variant}: ${JSON.stringify(results[variant].at(-1))}`)
    }
  }
  const out = join(ROOT, 'bench/results', process.env.BENCH_OUT ?? 'frozen-backend')
  writeFileSync(`${out}.json`, `${JSON.stringify({ rate: RATE, warmupMs: WARMUP_MS, frozenMs: FROZEN_MS, results }, null, 2)}\n`)
  writeFileSync(`${out}.md`, markdown(results))
  console.log(markdown(results))
}

await main()
