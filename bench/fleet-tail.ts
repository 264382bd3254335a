// npm run bench:fleet-tail: where the fleet simulation's TTFT tail comes from. The fleet of
// bench/fleet.ts at one load level (BENCH_LEVEL, default 0.8) over BENCH_ISOLATES (default 8)
// gateway isolates, for each routing variant of BENCH_VARIANTS (default smart,
// smart_without_ledger,round_robin), side by side in each of BENCH_RUNS (3) runs. Per run: TTFT
// percentiles of follow-up turns and of new conversations, the share of requests over 150 ms, and
// what the backends' own queues held (the emulators' vllm:request_queue_time_seconds sum, and the
// longest queue each saw): whether a slow first token waited in a backend's queue or elsewhere.
// Writes bench/results/fleet-tail.{json,md}. Bounded: fixed phases, a drain limit, a time limit.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, serveIsolates, type RunningEmulator, type ServedWorker } from '../scripts/stack.ts'
import { ALL_POLICIES, type Policy } from './fleet-report.ts'
import {
  BACKEND_KEY,
  ROOMY_LIMITS,
  backendTotals,
  gatewayVars,
  measureCapacity,
  resetBackends,
  runLoad,
  startBackends,
  type Outcome,
} from './fleet-traffic.ts'
import { median, percentile, round } from './stats.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const LEVEL = Number(process.env.BENCH_LEVEL ?? 0.8)
const ISOLATES = Number(process.env.BENCH_ISOLATES ?? 8)
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 12_000)
const WARM_UP_MS = 8_000
const TIME_LIMIT_MS = 20 * 60_000
const SLOW_MS = 150
const VARIANTS = (process.env.BENCH_VARIANTS ?? 'smart,smart_without_ledger,round_robin').split(',') as Policy[]
const CLIENT_KEY = `sk-${'t'.repeat(43)}`
const startedAt = Date.now()

for (const variant of VARIANTS) if (!ALL_POLICIES.includes(variant)) throw new Error(`BENCH_VARIANTS: unknown variant ${variant}`)

interface RunResult {
  requests: number
  /** p50, p90, p95, p99 of all, of follow-ups and of new conversations' first turns (ms). */
  all: number[]
  follow_ups: number[]
  new_conversations: number[]
  slow_share: number
  followup_prefix_hit_rate: number
  /** Seconds all requests spent in the backends' waiting queues together, and each backend's longest queue. */
  queue_seconds: number
  max_waiting: number[]
}

const quantiles = (values: number[]) => [50, 90, 95, 99].map((p) => round(percentile(values, p)))
const ttftsOf = (outcomes: Outcome[]) => outcomes.flatMap((o) => (o.ttftMs === null ? [] : [o.ttftMs]))

/** The emulators' queue time (vllm:request_queue_time_seconds_sum, since their last reset) and longest queue. */
async function queues(backends: RunningEmulator[]): Promise<{ seconds: number; maxWaiting: number[] }> {
  const each = await Promise.all(
    backends.map(async (backend) => {
      const metrics = await (await fetch(`${backend.url}/metrics`, { headers: { authorization: `Bearer ${BACKEND_KEY}` } })).text()
      const sum = /^vllm:request_queue_time_seconds_sum(?:\{[^}]*\})? (\S+)$/m.exec(metrics)?.[1]
      const stats = (await (await fetch(`${backend.url}/emulator/stats`)).json()) as { maxWaiting: number }
      return { seconds: Number(sum ?? Number.NaN), maxWaiting: stats.maxWaiting }
    }),
  )
  return { seconds: each.reduce((total, q) => total + q.seconds, 0), maxWaiting: each.map((q) => q.maxWaiting) }
}

async function runPhase(gatewayUrl: string, backends: RunningEmulator[], rate: number): Promise<RunResult> {
  if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error('fleet tail benchmark exceeded its time limit')
  await resetBackends(backends)
  const outcomes = await runLoad(gatewayUrl, CLIENT_KEY, rate, PHASE_MS)
  const all = ttftsOf(outcomes)
  const followUps = ttftsOf(outcomes.filter((o) => o.followUp))
  const { prefixHitRequests } = await backendTotals(backends)
  const queue = await queues(backends)
  return {
    requests: outcomes.length,
    all: quantiles(all),
    follow_ups: quantiles(followUps),
    new_conversations: quantiles(ttftsOf(outcomes.filter((o) => !o.followUp))),
    slow_share: round(all.filter((ms) => ms > SLOW_MS).length / Math.max(1, all.length), 3),
    followup_prefix_hit_rate: round(followUps.length === 0 ? 0 : Math.min(1, prefixHitRequests / followUps.length)),
    queue_seconds: round(queue.seconds),
    max_waiting: queue.maxWaiting,
  }
}

function report(capacity: number, results: Record<string, RunResult[]>): string {
  const lines = [
    '# Where the TTFT tail comes from',
    '',
    `${new Date().toISOString()}. bench/fleet.ts's four emulated backends at ${LEVEL * 100}% of ${round(capacity)} requests/s, ${ISOLATES} gateway isolates, ${RUNS} runs of ${PHASE_MS / 1000} s per variant, side by side (each variant warmed ${WARM_UP_MS / 1000} s first). TTFT in ms at the client (p50/p90/p95/p99); queue: seconds all requests spent in the backends' waiting queues together, and each backend's longest queue.`,
    '',
    '| variant | run | requests | all | follow-ups | new conversations | over 150 ms | hit rate | queue s | longest queues |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (const [variant, runs] of Object.entries(results)) {
    runs.forEach((r, i) =>
      lines.push(
        `| ${variant} | ${i + 1} | ${r.requests} | ${r.all.join('/')} | ${r.follow_ups.join('/')} | ${r.new_conversations.join('/')} | ${r.slow_share} | ${r.followup_prefix_hit_rate} | ${r.queue_seconds} | ${r.max_waiting.join(',')} |`,
      ),
    )
  }
  lines.push('', 'Medians over the runs:', '')
  for (const [variant, runs] of Object.entries(results)) {
    const p99s = runs.map((r) => r.all[3] as number)
    lines.push(
      `- ${variant}: p99 ${median(p99s)} ms (${Math.min(...p99s)}-${Math.max(...p99s)}), over 150 ms ${median(runs.map((r) => r.slow_share))}, hit rate ${median(runs.map((r) => r.followup_prefix_hit_rate))}, queue ${median(runs.map((r) => r.queue_seconds))} s`,
    )
  }
  return lines.join('\n')
}

async function main(): Promise<void> {
  const script = await buildWorker()
  const backends = await startBackends()
  const keys = [{ secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS, scopes: ['chat' as const] } }]
  const gateways = new Map<Policy, ServedWorker>()
  try {
    const probe = await serveIsolates(script, gatewayVars('round_robin', backends), { isolates: 1, keys })
    const capacity = await measureCapacity(probe.url, CLIENT_KEY).finally(() => probe.dispose())
    for (const variant of VARIANTS) {
      const gateway = await serveIsolates(script, gatewayVars(variant, backends), { isolates: ISOLATES, keys })
      gateways.set(variant, gateway)
      await runLoad(gateway.url, CLIENT_KEY, capacity * LEVEL, WARM_UP_MS)
    }
    const results: Record<string, RunResult[]> = {}
    for (let run = 0; run < RUNS; run++) {
      for (const variant of VARIANTS) {
        const gateway = gateways.get(variant) as ServedWorker
        ;(results[variant] ??= []).push(await runPhase(gateway.url, backends, capacity * LEVEL))
      }
      console.error(`run ${run + 1}/${RUNS} done`)
    }
    const text = report(capacity, results)
    writeFileSync(
      join(ROOT, 'bench/results/fleet-tail.json'),
      `${JSON.stringify({ capacity, level: LEVEL, isolates: ISOLATES, results }, null, 2)}\n`,
    )
    writeFileSync(join(ROOT, 'bench/results/fleet-tail.md'), `${text}\n`)
    console.log(text)
  } finally {
    await Promise.all([...gateways.values()].map((g) => g.dispose()))
    await Promise.all(backends.map((b) => b.stop()))
  }
}

await main()
