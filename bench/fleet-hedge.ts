// Hedged first tokens, on and off, side by side in each run (part of npm run bench:fleet with
// BENCH_HEDGE=1, or alone: npm run bench:fleet-hedge). The fleet of bench/fleet.ts (four emulated
// backends with the continuous-batching load model) at 95% of the measured capacity
// (BENCH_HEDGE_LEVEL), smart routing; with BENCH_HEDGE_STRAGGLER_TTFT_MS one backend is a
// straggler whose first token comes that late. Reports p99 TTFT with and without hedging and the
// extra backend requests hedging cost. Writes bench/results/fleet-hedge[-straggler][-LEVEL%]
// .{json,md} (the level only when not 95%). Bounded: fixed phases, a drain
// limit, a time limit.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, serveWorker, type RunningEmulator, type ServedWorker } from '../scripts/stack.ts'
import {
  BACKEND_KEY,
  MAX_NUM_SEQS,
  ROOMY_LIMITS,
  backendTotals,
  measureCapacity,
  resetBackends,
  runLoad,
  startBackends,
  type BackendTotals,
  type Outcome,
} from './fleet-traffic.ts'
import { median, percentile, round } from './stats.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 12_000)
const LEVEL = Number(process.env.BENCH_HEDGE_LEVEL ?? 0.95)
const STRAGGLER_TTFT_MS = Number(process.env.BENCH_HEDGE_STRAGGLER_TTFT_MS ?? 0)
// A level other than the default 95% gets its own files (fleet-hedge-straggler-70 for 0.7).
const RESULTS = `bench/results/fleet-hedge${STRAGGLER_TTFT_MS > 0 ? '-straggler' : ''}${LEVEL === 0.95 ? '' : `-${Math.round(LEVEL * 100)}`}`
const TIME_LIMIT_MS = 20 * 60_000
const CLIENT_KEY = `sk-${'h'.repeat(43)}`
/** Reads the gateway's /metrics (the hedges by winner). */
const ADMIN_KEY = `sk-${'H'.repeat(43)}`
const MODES = ['hedging_off', 'hedging_on'] as const
type Mode = (typeof MODES)[number]

const startedAt = Date.now()

/** The gateway's hedges so far by winner (primary, hedge, none), from its /metrics. */
async function hedgesByWinner(gatewayUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${gatewayUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).text()
  const counts: Record<string, number> = {}
  for (const match of text.matchAll(/^edge_proxy_hedges_total\{won="(\w+)"\} (\d+)$/gm)) counts[match[1] as string] = Number(match[2])
  return counts
}

/** The telemetry batch goes after TELEMETRY_BATCH_MS (1 s): wait it out before reading /metrics. */
const TELEMETRY_SETTLE_MS = 1_500

/** Which of the backends is made the straggler, and whose share of the requests is reported. */
const STRAGGLER = 0

async function configure(backends: RunningEmulator[]): Promise<void> {
  await resetBackends(backends)
  if (STRAGGLER_TTFT_MS > 0) {
    await fetch(`${backends[STRAGGLER]?.url}/emulator/config`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ttftMs: STRAGGLER_TTFT_MS }),
    })
  }
}

interface Phase {
  capacity_rps: number
  ttft_p50: number
  ttft_p99: number
  /** Refused by the gateway (every backend full: 503) or failed otherwise. */
  failed: number
  requests: number
  /** Backend requests beyond one per request that reached a backend: the hedges' cost. */
  extra_backend_requests: number
  /**
   * The straggler's share of all backend requests (null without one): at 95% load the three
   * others cannot carry the whole load, so this share is what the cap would have to cover.
   */
  straggler_share: number | null
  /** Hedges in the phase by which attempt won (the gateway's /metrics). */
  hedges_won: Record<string, number>
  /** Every served request's TTFT (ms), for the p99 over all runs; not written to the results. */
  ttfts?: number[]
}

function summarize(outcomes: Outcome[], upstream: BackendTotals, capacity: number, hedges: Record<string, number>): Phase {
  const served = outcomes.flatMap((o) => (o.ttftMs === null ? [] : [o.ttftMs]))
  const reached = outcomes.filter((o) => !o.refused).length
  return {
    capacity_rps: round(capacity),
    ttft_p50: round(percentile(served, 50)),
    ttft_p99: round(percentile(served, 99)),
    failed: outcomes.length - served.length,
    requests: outcomes.length,
    extra_backend_requests: round((upstream.requests - reached) / Math.max(1, reached), 4),
    straggler_share: STRAGGLER_TTFT_MS > 0 ? round((upstream.perBackend[STRAGGLER] ?? 0) / Math.max(1, upstream.requests), 4) : null,
    hedges_won: hedges,
    ttfts: served,
  }
}

export async function hedgeComparison(): Promise<Record<Mode, Phase[]>> {
  const [script, backends] = await Promise.all([buildWorker(), startBackends()])
  const vars = (mode: Mode) => ({
    BACKEND_URLS: backends.map((b) => b.url).join(','),
    BACKEND_API_KEY: BACKEND_KEY,
    BACKEND_MAX_CONCURRENCY: String(MAX_NUM_SEQS),
    ROUTING_POLICY: 'smart',
    HEDGING: mode === 'hedging_on' ? 'on' : 'off',
  })
  const keys = [
    { secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS } },
    { secret: ADMIN_KEY, fields: { scopes: ['admin' as const] } },
  ]
  const gateways = new Map<Mode, ServedWorker>()
  for (const mode of MODES) gateways.set(mode, await serveWorker(script, vars(mode), { keys }))
  const results: Record<Mode, Phase[]> = { hedging_off: [], hedging_on: [] }
  try {
    // Each run measures the capacity through the hedging-off gateway, which so learns every
    // backend's TTFT before run 1; the hedging-on one would start run 1 cold (and route to the
    // straggler until it has measured it). Both learn once, alike, before the runs.
    await configure(backends)
    await measureCapacity((gateways.get('hedging_on') as ServedWorker).url, CLIENT_KEY)
    for (let run = 0; run < RUNS; run++) {
      // Measured again for every pair: on a shared machine the fleet's capacity drifts, and a stale
      // figure turns "95%" into an overload whose queues swamp what hedging changes.
      await configure(backends)
      const capacity = await measureCapacity((gateways.get('hedging_off') as ServedWorker).url, CLIENT_KEY)
      console.error(`run ${run + 1}: capacity ${round(capacity)} requests/s; load ${LEVEL * 100}%`)
      for (const mode of run % 2 === 0 ? MODES : [...MODES].reverse()) {
        if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error('hedge benchmark exceeded its time limit')
        await configure(backends)
        const gateway = (gateways.get(mode) as ServedWorker).url
        const before = await hedgesByWinner(gateway)
        const outcomes = await runLoad(gateway, CLIENT_KEY, capacity * LEVEL, PHASE_MS)
        await new Promise((resolve) => setTimeout(resolve, TELEMETRY_SETTLE_MS))
        const after = await hedgesByWinner(gateway)
        const hedges = Object.fromEntries(Object.entries(after).map(([won, n]) => [won, n - (before[won] ?? 0)]))
        results[mode].push(summarize(outcomes, await backendTotals(backends), capacity, hedges))
      }
    }
    return results
  } finally {
    await Promise.all([...gateways.values()].map((g) => g.dispose()))
    await Promise.all(backends.map((b) => b.stop()))
  }
}

function spread(values: number[]): string {
  return `${round(median(values))} (${round(Math.min(...values))}-${round(Math.max(...values))})`
}

export function reportHedge(results: Record<Mode, Phase[]>): string {
  const p99 = (mode: Mode) => median(results[mode].map((r) => r.ttft_p99))
  // A phase's p99 is its 4th slowest request or so; all runs' requests together rest on ~5x more.
  const pooledP99 = (mode: Mode) =>
    round(
      percentile(
        results[mode].flatMap((r) => r.ttfts ?? []),
        99,
      ),
    )
  const written = Object.fromEntries(MODES.map((mode) => [mode, results[mode].map((phase) => ({ ...phase, ttfts: undefined }))]))
  const ratios = results.hedging_on.map((on, i) => round(on.ttft_p99 / (results.hedging_off[i]?.ttft_p99 ?? Number.NaN)))
  const summary = {
    date: new Date().toISOString(),
    runs: RUNS,
    phase_ms: PHASE_MS,
    level: LEVEL,
    straggler_ttft_ms: STRAGGLER_TTFT_MS,
    results: written,
    p99_ratio_on_vs_off_per_run: ratios,
    pooled_p99: { hedging_off: pooledP99('hedging_off'), hedging_on: pooledP99('hedging_on') },
  }
  writeFileSync(join(ROOT, `${RESULTS}.json`), `${JSON.stringify(summary, null, 2)}\n`)
  const lines = [
    '# Hedged first tokens',
    '',
    `${summary.date}. bench/fleet.ts's four backends${STRAGGLER_TTFT_MS > 0 ? `, one a straggler (first token after ${STRAGGLER_TTFT_MS} ms)` : ''}, smart routing, ${LEVEL * 100}% of capacity, ${PHASE_MS / 1000} s phases, ${RUNS} runs; median (min-max) over runs, TTFT in ms at the client.`,
    '',
    '| hedging | TTFT p50 | TTFT p99 | extra backend requests | failed | requests | capacity (req/s) |',
    '|---|---|---|---|---|---|---|',
  ]
  for (const mode of MODES) {
    const runs = results[mode]
    const col = (key: Exclude<keyof Phase, 'hedges_won' | 'ttfts' | 'straggler_share'>) => spread(runs.map((r) => r[key]))
    lines.push(
      `| ${mode === 'hedging_on' ? 'on' : 'off'} | ${col('ttft_p50')} | ${col('ttft_p99')} | ${col('extra_backend_requests')} | ${col('failed')} | ${col('requests')} | ${col('capacity_rps')} |`,
    )
  }
  const won = (by: string) => results.hedging_on.map((r) => r.hedges_won[by] ?? 0).join(', ')
  lines.push(
    '',
    `Hedges per run with hedging on, won by the primary: ${won('primary')}; by the hedge: ${won('hedge')}; by neither: ${won('none')}.`,
  )
  if (STRAGGLER_TTFT_MS > 0) {
    const share = (mode: Mode) => results[mode].map((r) => r.straggler_share ?? 0).join(', ')
    lines.push(
      '',
      `The straggler's share of backend requests per run, hedging off: ${share('hedging_off')}; on: ${share('hedging_on')}; hedges are capped at HEDGE_MAX_SHARE of requests, 0.05 by default.`,
    )
  }
  lines.push(
    '',
    `p99 TTFT, hedging on / off: **${round(p99('hedging_on') / p99('hedging_off'))}** (medians; per run ${ratios.join(', ')}; target <= 0.7 for <= 0.05 extra requests).`,
    '',
    `Pooled p99 (every run's requests together): off ${pooledP99('hedging_off')} ms, on ${pooledP99('hedging_on')} ms, on / off **${round(pooledP99('hedging_on') / pooledP99('hedging_off'))}**.`,
  )
  writeFileSync(join(ROOT, `${RESULTS}.md`), `${lines.join('\n')}\n`)
  return lines.join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(reportHedge(await hedgeComparison()))
