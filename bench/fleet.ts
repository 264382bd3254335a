// npm run bench:fleet: the routing simulation. Four emulated GPU backends with the continuous-
// batching load model (a bounded batch, a queue, prefill that a prefix cache makes cheap, decode
// slowing as the batch grows; bench/fleet-traffic.ts) behind four builds of the routing, side by
// side in each run: this Worker's ("smart"), the same without its slot ledger (SLOT_LEDGERS=off),
// weighted random and round robin. Each build runs as N gateway isolates
// (BENCH_ISOLATES, default 1, 4 and 8) sharing KV and Durable Objects, with requests spread over
// them at random (scripts/stack.ts serveIsolates). The workload is multi-turn conversations at
// 50%, 80% and 95% (BENCH_LEVELS) of the fleet's measured capacity, open loop (Poisson arrivals).
// Then, with the most isolates, one backend is killed in the middle of a run: no request that had
// not started streaming may fail. Writes bench/results/fleet.{json,md}. Bounded: every phase has a
// fixed duration and a deadline.
import { buildWorker, serveIsolates, type RunningEmulator, type ServedWorker } from '../scripts/stack.ts'
import {
  MAX_NUM_SEQS,
  ROOMY_LIMITS,
  TELEMETRY_BATCH_MS,
  gatewayVars,
  backendTotals,
  measureCapacity,
  resetBackends,
  runLoad,
  startBackends,
  type Outcome,
} from './fleet-traffic.ts'
import { ALL_POLICIES, POLICIES, report, type KillResult, type PhaseResult, type Policy, type Results } from './fleet-report.ts'
import { percentile, round } from './stats.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const numbers = (text: string) => text.split(',').map(Number)
const LEVELS = numbers(process.env.BENCH_LEVELS ?? '0.5,0.8,0.95')
const ISOLATES = numbers(process.env.BENCH_ISOLATES ?? '1,4,8')
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 12_000)
/** Which builds run side by side (default the four routing policies; ablations decide removals). */
const RUN_POLICIES = (process.env.BENCH_POLICIES?.split(',') ?? [...POLICIES]) as Policy[]
for (const policy of RUN_POLICIES) if (!ALL_POLICIES.includes(policy)) throw new Error(`BENCH_POLICIES: unknown policy ${policy}`)
/**
 * What a bundle from before the dispatch rework (924fa0d) needs beside this tree's wrangler.toml:
 * its settings as they were then, and the FleetLoad object's binding.
 */
const BEFORE_DISPATCH_VARS = {
  SHARED_PLACEMENTS: 'on',
  HEDGE_PERCENTILE: '95',
  HEDGE_MIN_DELAY_MS: '50',
  HEDGE_MAX_DELAY_MS: '2000',
  HEDGE_MAX_SHARE: '0.05',
}
const BEFORE_DISPATCH_OBJECTS = { FLEET_LOAD: 'FleetLoad' }
/** The results' file name under bench/results/. */
const RESULTS_NAME = process.env.BENCH_RESULTS_NAME ?? 'fleet'
const TIME_LIMIT_MS = 30 * 60_000
const CLIENT_KEY = `sk-${'f'.repeat(43)}`
/** The client key also reads the gateway's /metrics (admin) for the hedge counter. */
const KEY_SCOPES: ('chat' | 'admin')[] = ['chat', 'admin']
/** Hedged requests in the gateway's Prometheus text (bench H3's hedging; absent before it). */
const HEDGE_METRIC = /^edge_proxy_hedges_total(?:\{[^}]*\})?\s+([0-9.eE+]+)$/gm
const startedAt = Date.now()

function checkTime(): void {
  if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error('fleet benchmark exceeded its time limit')
}

function summarizePhase(outcomes: Outcome[], hits: number, hedges: number | null): PhaseResult {
  const ttfts = outcomes.flatMap((o) => (o.ttftMs === null ? [] : [o.ttftMs]))
  const followUps = outcomes.filter((o) => o.followUp && o.ttftMs !== null).length
  return {
    ttft_p50: round(percentile(ttfts, 50)),
    ttft_p99: round(percentile(ttfts, 99)),
    followup_prefix_hit_rate: round(followUps === 0 ? 0 : Math.min(1, hits / followUps)),
    failed: outcomes.filter((o) => o.failedBeforeData || o.failedMidStream).length,
    requests: outcomes.length,
    hedge_rate: hedges === null || outcomes.length === 0 ? null : round(hedges / outcomes.length, 3),
    ttfts,
  }
}

/** The gateway's hedged requests so far (all `won` labels), or null when it exports no such counter. */
async function hedgesSoFar(gatewayUrl: string): Promise<number | null> {
  const response = await fetch(`${gatewayUrl}/metrics`, { headers: { authorization: `Bearer ${CLIENT_KEY}` } })
  if (!response.ok) {
    await response.body?.cancel()
    return null
  }
  const matches = [...(await response.text()).matchAll(HEDGE_METRIC)]
  return matches.length === 0 ? null : matches.reduce((sum, match) => sum + Number(match[1]), 0)
}

/** Isolates send their telemetry every TELEMETRY_BATCH_MS: wait that long (and a margin) before reading counters. */
const settleTelemetry = () => new Promise((resolve) => setTimeout(resolve, TELEMETRY_BATCH_MS * 3))

async function runPhase(gatewayUrl: string, backends: RunningEmulator[], rate: number): Promise<PhaseResult> {
  checkTime()
  await resetBackends(backends)
  const before = await hedgesSoFar(gatewayUrl)
  const outcomes = await runLoad(gatewayUrl, CLIENT_KEY, rate, PHASE_MS)
  const { prefixHitRequests } = await backendTotals(backends)
  await settleTelemetry()
  const after = await hedgesSoFar(gatewayUrl)
  return summarizePhase(outcomes, prefixHitRequests, before === null || after === null ? null : after - before)
}

async function main(): Promise<void> {
  // BENCH_GATEWAY_BUNDLE: serve an already built bundle (another commit's) instead of building the working tree.
  const script = process.env.BENCH_GATEWAY_BUNDLE ?? (await buildWorker())
  // smart_before runs the baseline build (BENCH_BASELINE_BUNDLE) with smart routing.
  const baseline = process.env.BENCH_BASELINE_BUNDLE
  if (RUN_POLICIES.includes('smart_before') && !baseline) throw new Error('smart_before needs BENCH_BASELINE_BUNDLE')
  const backends = await startBackends()
  const keys = [{ secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS, scopes: KEY_SCOPES } }]
  const serve = (policy: Policy, isolates: number) =>
    policy === 'smart_before'
      ? serveIsolates(
          baseline as string,
          { ...gatewayVars(policy, backends), ...BEFORE_DISPATCH_VARS },
          { isolates, keys, extraObjects: BEFORE_DISPATCH_OBJECTS },
        )
      : serveIsolates(script, gatewayVars(policy, backends), { isolates, keys })
  const gateways = new Map<Policy, ServedWorker>()
  try {
    const probe = await serve('round_robin', 1)
    const capacity = await measureCapacity(probe.url, CLIENT_KEY).finally(() => probe.dispose())
    console.error(`capacity: ${round(capacity)} requests/s`)
    const results: Results = {}
    let kill: KillResult | null = null
    for (const isolates of ISOLATES) {
      for (const policy of RUN_POLICIES) gateways.set(policy, await serve(policy, isolates))
      for (let run = 0; run < RUNS; run++) {
        for (const level of LEVELS) {
          for (const policy of rotate(RUN_POLICIES, run)) {
            const result = await runPhase((gateways.get(policy) as ServedWorker).url, backends, capacity * level)
            const byLevel = (results[String(isolates)] ??= {})
            ;((byLevel[String(level)] ??= {})[policy] ??= []).push(result)
          }
        }
        console.error(`${isolates} isolate(s): run ${run + 1}/${RUNS} done`)
      }
      if (isolates === Math.max(...ISOLATES)) {
        kill = { isolates, ...(await killOneBackend(backends, (gateways.get('smart') as ServedWorker).url, capacity * 0.8)) }
      }
      await Promise.all([...gateways.values()].map((g) => g.dispose()))
      gateways.clear()
    }
    report({ capacity, runs: RUNS, phaseMs: PHASE_MS, maxNumSeqs: MAX_NUM_SEQS }, results, kill, RUN_POLICIES, RESULTS_NAME)
  } finally {
    await Promise.all([...gateways.values()].map((g) => g.dispose()))
    await Promise.all(backends.map((b) => b.stop()))
  }
}

/** 80% load on the smart gateway; half way through, one backend is killed (SIGKILL). */
async function killOneBackend(backends: RunningEmulator[], gatewayUrl: string, rate: number) {
  await resetBackends(backends)
  let killed = false
  const outcomes = await runLoad(gatewayUrl, CLIENT_KEY, rate, PHASE_MS, (elapsed) => {
    if (!killed && elapsed > PHASE_MS / 2) {
      killed = true
      backends[3]?.process.kill('SIGKILL')
    }
  })
  return {
    requests: outcomes.length,
    failed_before_streaming: outcomes.filter((o) => o.failedBeforeData).length,
    failed_mid_stream: outcomes.filter((o) => o.failedMidStream).length,
  }
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const start = by % items.length
  return [...items.slice(start), ...items.slice(0, start)]
}

await main()
