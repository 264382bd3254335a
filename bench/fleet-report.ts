// bench:fleet's results: medians over runs with the spread of p99, per isolate count, load level
// and routing policy, written to bench/results/fleet.{json,md}.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { median, percentile, round } from './stats.ts'

// smart_without_ledger: smart routing with SLOT_LEDGERS=off, each isolate ranking by its own
// counts and the fleet load view alone, side by side with smart and its slot ledger.
export const POLICIES = ['smart', 'smart_without_ledger', 'weighted_random', 'round_robin'] as const
/**
 * smart_before: smart routing as another build (BENCH_BASELINE_BUNDLE) has it, served side by side
 * with this one, so a change's before and after share one run.
 */
export const BASELINES = ['smart_before'] as const
export type Policy = (typeof POLICIES)[number] | (typeof BASELINES)[number]
export const ALL_POLICIES: readonly Policy[] = [...POLICIES, ...BASELINES]

export interface PhaseResult {
  ttft_p50: number
  ttft_p99: number
  followup_prefix_hit_rate: number
  failed: number
  requests: number
  /** Hedged requests per request, from the gateway's counter; null when it has none. */
  hedge_rate: number | null
  /** Every served request's TTFT (ms), for the p99 over all runs; not written to the results. */
  ttfts?: number[]
}

/** isolates -> load level -> policy -> one result per run. */
export type Results = Record<string, Record<string, Partial<Record<Policy, PhaseResult[]>>>>

export interface KillResult {
  isolates: number
  requests: number
  failed_before_streaming: number
  failed_mid_stream: number
}

export interface Setup {
  capacity: number
  runs: number
  phaseMs: number
  maxNumSeqs: number
}

interface PolicySummary extends PhaseResult {
  /** Lowest and highest p99 over the runs: the spread. */
  ttft_p99_range: [number, number]
  /**
   * p99 of every run's requests together: a phase of ~350 requests puts its own p99 on its 4th
   * slowest request, which one stall of the shared machine moves; pooled, it rests on ~11.
   */
  ttft_p99_pooled: number
}

function summarizeRuns(runs: PhaseResult[]): PolicySummary {
  const of = (key: 'ttft_p50' | 'ttft_p99' | 'followup_prefix_hit_rate' | 'failed' | 'requests') => round(median(runs.map((r) => r[key])))
  const hedges = runs.flatMap((r) => (r.hedge_rate === null ? [] : [r.hedge_rate]))
  const p99s = runs.map((r) => r.ttft_p99)
  return {
    ttft_p50: of('ttft_p50'),
    ttft_p99: of('ttft_p99'),
    ttft_p99_range: [Math.min(...p99s), Math.max(...p99s)],
    ttft_p99_pooled: round(
      percentile(
        runs.flatMap((r) => r.ttfts ?? []),
        99,
      ),
    ),
    followup_prefix_hit_rate: of('followup_prefix_hit_rate'),
    failed: of('failed'),
    requests: of('requests'),
    hedge_rate: hedges.length === 0 ? null : round(median(hedges), 3),
  }
}

type Summaries = Record<string, Record<string, Partial<Record<Policy, PolicySummary>>>>

/** The targets at 80% load for one isolate count. */
function targetsAt80(byLevel: Record<string, Partial<Record<Policy, PolicySummary>>>) {
  const at80 = byLevel['0.8']
  if (!at80?.smart || !at80.weighted_random || !at80.round_robin || !at80.smart_without_ledger) return null
  return {
    p99_smart_vs_weighted_random: round(at80.smart.ttft_p99 / at80.weighted_random.ttft_p99),
    p99_smart_vs_round_robin: round(at80.smart.ttft_p99 / at80.round_robin.ttft_p99),
    pooled_p99_smart_vs_weighted_random: round(at80.smart.ttft_p99_pooled / at80.weighted_random.ttft_p99_pooled),
    pooled_p99_smart_vs_round_robin: round(at80.smart.ttft_p99_pooled / at80.round_robin.ttft_p99_pooled),
    smart_followup_prefix_hit_rate: at80.smart.followup_prefix_hit_rate,
    p99_without_ledger_vs_round_robin: round(at80.smart_without_ledger.ttft_p99 / at80.round_robin.ttft_p99),
    without_ledger_followup_prefix_hit_rate: at80.smart_without_ledger.followup_prefix_hit_rate,
  }
}

function markdown(
  setup: Setup,
  policies: readonly Policy[],
  summary: { date: string; isolates: Summaries; kill: KillResult | null },
): string[] {
  const lines = [
    '# Fleet routing simulation',
    '',
    `${summary.date}. Four emulated backends (max-num-seqs ${setup.maxNumSeqs}, prefill 0.1 ms per uncached prompt token, decode 8 ms + 1.5 ms per other running sequence).`,
    `Capacity measured at ${round(setup.capacity)} requests/s (one isolate, round robin); each level runs ${setup.phaseMs / 1000} s of Poisson arrivals of multi-turn conversation turns, spread at random over N gateway isolates that share KV and Durable Objects. Medians over ${setup.runs} runs, p99 spread as min-max over the runs, pooled p99 over all runs' requests together; TTFT in ms at the client. Hedge rate: hedged requests per request from the gateway's \`edge_proxy_hedges_total\` (n.a. when the gateway has no such counter).`,
    '',
    '| isolates | load | routing | TTFT p50 | TTFT p99 | p99 min-max | pooled p99 | follow-up prefix-cache hit rate | failed | requests | hedge rate |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (const [isolates, byLevel] of Object.entries(summary.isolates)) {
    for (const [level, byPolicy] of Object.entries(byLevel)) {
      for (const policy of policies) {
        const r = byPolicy[policy]
        if (!r) continue
        lines.push(
          `| ${isolates} | ${Number(level) * 100}% | ${policy} | ${r.ttft_p50} | ${r.ttft_p99} | ${r.ttft_p99_range[0]}-${r.ttft_p99_range[1]} | ${r.ttft_p99_pooled} | ${r.followup_prefix_hit_rate} | ${r.failed} | ${r.requests} | ${r.hedge_rate ?? 'n.a.'} |`,
        )
      }
    }
  }
  lines.push('', 'At 80% load (targets: smart p99 <= 0.6x weighted random and <= 1x round robin; follow-up hit rate >= 0.9):', '')
  for (const [isolates, byLevel] of Object.entries(summary.isolates)) {
    const t = targetsAt80(byLevel)
    if (t)
      lines.push(
        `- ${isolates} isolate(s): smart / weighted random p99 **${t.p99_smart_vs_weighted_random}**, smart / round robin p99 **${t.p99_smart_vs_round_robin}** (pooled p99: ${t.pooled_p99_smart_vs_weighted_random} and ${t.pooled_p99_smart_vs_round_robin}), smart follow-up hit rate **${t.smart_followup_prefix_hit_rate}** (without the slot ledger: p99 ${t.p99_without_ledger_vs_round_robin}x round robin's, hit rate ${t.without_ledger_followup_prefix_hit_rate}).`,
      )
  }
  const kill = summary.kill
  if (kill)
    lines.push(
      '',
      `One backend killed (SIGKILL) half way through a run at 80% load, smart routing over ${kill.isolates} isolate(s): ${kill.requests} requests, ${kill.failed_before_streaming} failed before streaming (target 0), ${kill.failed_mid_stream} failed mid-stream (those the killed backend was streaming).`,
    )
  return lines
}

/** Writes bench/results/NAME.{json,md} (NAME: fleet unless given). */
export function report(
  setup: Setup,
  results: Results,
  kill: KillResult | null,
  policies: readonly Policy[] = POLICIES,
  name = 'fleet',
): void {
  const isolates: Summaries = Object.fromEntries(
    Object.entries(results).map(([n, byLevel]) => [
      n,
      Object.fromEntries(
        Object.entries(byLevel).map(([level, byPolicy]) => [
          level,
          Object.fromEntries(policies.map((policy) => [policy, summarizeRuns(byPolicy[policy] ?? [])])),
        ]),
      ),
    ]),
  )
  const summary = { date: new Date().toISOString(), isolates, kill }
  const json = {
    ...summary,
    runs: setup.runs,
    phase_ms: setup.phaseMs,
    capacity_rps: round(setup.capacity),
    targets_at_80: Object.fromEntries(Object.entries(isolates).map(([n, byLevel]) => [n, targetsAt80(byLevel)])),
  }
  const dir = join(ROOT, 'bench/results')
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`)
  const lines = markdown(setup, policies, summary)
  writeFileSync(join(dir, `${name}.md`), `${lines.join('\n')}\n`)
  console.log(lines.join('\n'))
}
