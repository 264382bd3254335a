// bench:saturation's results: per build and run, the figures of each phase; medians over runs with
// their spread (min-max), against the edge queue's targets, written to bench/results/saturation.{json,md}.
import { writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { median, percentile, round } from './stats.ts'

/** "before": the build before the edge queue; "queue": the working tree. */
export const BUILDS = ['before', 'queue'] as const
export type Build = (typeof BUILDS)[number]
export type Role = 'interactive' | 'batch' | 'standard-a' | 'standard-b'
export type Phase = 'idle' | 'flood' | 'fairness' | 'not_saturated'

/** One client request. Times in ms from the phase's start. */
export interface Outcome {
  role: Role
  sentMs: number
  /** When the answer (the whole stream) ended at the client. */
  endMs: number
  /** The gateway's HTTP status; null when none came. */
  status: number | null
  /** `complete` for a stream that ended with [DONE] and no error event; else a refusal's code or what went wrong. */
  outcome: string
  /** Time to the response's headers at the client; null when none came. */
  headersMs: number | null
  /** Time to the first data event at the client; null when none came. */
  ttftMs: number | null
}

export interface PhaseResult {
  outcomes: Outcome[]
  /** Arrivals not sent because MAX_IN_FLIGHT client requests were in flight. */
  unsent: Partial<Record<Role, number>>
  /** The backends' completed generations from the phase's start to its last arrival. */
  backendCompleted: number
  /** The longest waiting queue (vLLM's) any backend held over the phase and its drain. */
  backendMaxWaiting: number
  /** From the phase's end (PHASE_MS) to its last answer; negative when every answer came before. */
  drainMs: number
  /** The machine's 1-minute load average at the end (2 cores: above 2, something waited for a CPU). */
  load: number
}

export type RunRecord = Partial<Record<Build, Partial<Record<Phase, PhaseResult>>>>

export interface Setup {
  baselineCommit: string
  queueBuild: string
  capacity: number
  runs: number
  isolates: number
  phaseMs: number
  maxNumSeqs: number
  maxInFlight: number
  phases: Record<Phase, Partial<Record<Role, number>>>
  elapsedS: number
  records: RunRecord[]
}

/** Skipped at the start of a phase for throughput and fairness: the queue fills in it. */
const WARM_MS = 1_000

const complete = (o: Outcome) => o.outcome === 'complete'
const headers = (outcomes: Outcome[], role: Role) =>
  outcomes.flatMap((o) => (o.role === role && complete(o) && o.headersMs !== null ? [o.headersMs] : []))
const ttfts = (outcomes: Outcome[], role: Role) =>
  outcomes.flatMap((o) => (o.role === role && complete(o) && o.ttftMs !== null ? [o.ttftMs] : []))

/** Jain's fairness index of `counts`: (sum x)^2 / (n sum x^2); 1 when equal. */
function jain(counts: number[]): number {
  const sum = counts.reduce((a, b) => a + b, 0)
  const squares = counts.reduce((a, b) => a + b * b, 0)
  return squares === 0 ? Number.NaN : (sum * sum) / (counts.length * squares)
}

/** Completions per second (all keys) at the client from WARM_MS to the last arrival, as a share of the capacity. */
function throughputShare(result: PhaseResult, setup: Setup): number {
  const served = result.outcomes.filter((o) => complete(o) && o.endMs >= WARM_MS && o.endMs < setup.phaseMs).length
  return served / ((setup.phaseMs - WARM_MS) / 1000) / setup.capacity
}

/**
 * Per 1-s window from WARM_MS on, each standard key's completions, for the windows at whose start
 * both keys had requests in flight (waiting or streaming): Jain's index per window.
 */
function fairnessWindows(result: PhaseResult, setup: Setup): number[] {
  const keys: Role[] = ['standard-a', 'standard-b']
  const indexes: number[] = []
  for (let start = WARM_MS; start + 1000 <= setup.phaseMs; start += 1000) {
    const busy = keys.every((key) => result.outcomes.some((o) => o.role === key && o.sentMs <= start && o.endMs > start))
    if (!busy) continue
    const counts = keys.map(
      (key) => result.outcomes.filter((o) => o.role === key && complete(o) && o.endMs >= start && o.endMs < start + 1000).length,
    )
    const index = jain(counts)
    if (!Number.isNaN(index)) indexes.push(index)
  }
  return indexes
}

function tally(outcomes: Outcome[], role: Role): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of outcomes) if (o.role === role) counts[o.outcome] = (counts[o.outcome] ?? 0) + 1
  return counts
}

/** One build's figures in one run. */
function figures(record: Partial<Record<Phase, PhaseResult>>, setup: Setup): Record<string, number> {
  const idle = record.idle as PhaseResult
  const flood = record.flood as PhaseResult
  const fairness = record.fairness as PhaseResult
  const quiet = record.not_saturated as PhaseResult
  const idleP99 = percentile(ttfts(idle.outcomes, 'interactive'), 99)
  const floodTtfts = ttfts(flood.outcomes, 'interactive')
  const ofRole = (result: PhaseResult, role: Role) => result.outcomes.filter((o) => o.role === role)
  const jains = fairnessWindows(fairness, setup)
  const servedA = ofRole(fairness, 'standard-a').filter(complete).length
  const servedB = ofRole(fairness, 'standard-b').filter(complete).length
  const quietTtfts = ttfts(quiet.outcomes, 'standard-a')
  return {
    idle_interactive_ttft_p50: percentile(ttfts(idle.outcomes, 'interactive'), 50),
    idle_interactive_ttft_p99: idleP99,
    idle_interactive_not_served: ofRole(idle, 'interactive').filter((o) => !complete(o)).length,
    flood_interactive_ttft_p50: percentile(floodTtfts, 50),
    flood_interactive_ttft_p99: percentile(floodTtfts, 99),
    flood_interactive_headers_p50: percentile(headers(flood.outcomes, 'interactive'), 50),
    flood_interactive_headers_p99: percentile(headers(flood.outcomes, 'interactive'), 99),
    flood_backend_max_waiting: flood.backendMaxWaiting,
    flood_interactive_p99_vs_idle: round(percentile(floodTtfts, 99) / idleP99, 3),
    flood_interactive_requests: ofRole(flood, 'interactive').length,
    flood_interactive_refused: ofRole(flood, 'interactive').filter((o) => !complete(o)).length,
    flood_batch_requests: ofRole(flood, 'batch').length,
    flood_batch_served: ofRole(flood, 'batch').filter(complete).length,
    flood_batch_503: ofRole(flood, 'batch').filter((o) => o.status === 503).length,
    flood_unsent: Object.values(flood.unsent).reduce((a, b) => a + b, 0),
    flood_throughput_vs_capacity: round(throughputShare(flood, setup), 3),
    flood_backend_throughput_vs_capacity: round(flood.backendCompleted / (setup.phaseMs / 1000) / setup.capacity, 3),
    flood_drain_ms: flood.drainMs,
    fairness_jain_median: round(median(jains), 3),
    fairness_jain_min: jains.length === 0 ? Number.NaN : round(Math.min(...jains), 3),
    fairness_windows: jains.length,
    fairness_share_a: round(servedA / (servedA + servedB), 3),
    fairness_served: servedA + servedB,
    fairness_503: fairness.outcomes.filter((o) => o.status === 503).length,
    fairness_unsent: Object.values(fairness.unsent).reduce((a, b) => a + b, 0),
    fairness_throughput_vs_capacity: round(throughputShare(fairness, setup), 3),
    fairness_backend_throughput_vs_capacity: round(fairness.backendCompleted / (setup.phaseMs / 1000) / setup.capacity, 3),
    fairness_drain_ms: fairness.drainMs,
    fairness_backend_max_waiting: fairness.backendMaxWaiting,
    flood_load_average: flood.load,
    fairness_load_average: fairness.load,
    not_saturated_ttft_p50: percentile(quietTtfts, 50),
    not_saturated_ttft_p99: percentile(quietTtfts, 99),
    not_saturated_not_served: quiet.outcomes.filter((o) => !complete(o)).length,
  }
}

interface Summary {
  median: number
  min: number
  max: number
  runs: number[]
}

/** Median and min-max over the runs that gave a figure (a phase with no served request gives none). */
function summarize(values: number[]): Summary {
  const finite = values.filter((v) => Number.isFinite(v))
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, runs: values }
  return { median: round(median(finite), 3), min: round(Math.min(...finite), 3), max: round(Math.max(...finite), 3), runs: values }
}

interface Target {
  metric: string
  label: string
  target: string
  /** Whether the queue build met it, from both builds' summaries. */
  met: (queue: Summary, before: Summary) => boolean
}

const TARGETS: Target[] = [
  { metric: 'idle_interactive_ttft_p50', label: 'idle: interactive TTFT p50 (ms)', target: '', met: () => true },
  { metric: 'idle_interactive_ttft_p99', label: 'idle: interactive TTFT p99 (ms)', target: '', met: () => true },
  { metric: 'flood_interactive_ttft_p50', label: 'batch flood: interactive TTFT p50 (ms)', target: '', met: () => true },
  { metric: 'flood_interactive_ttft_p99', label: 'batch flood: interactive TTFT p99 (ms)', target: '', met: () => true },
  {
    metric: 'flood_interactive_headers_p50',
    label: 'batch flood: interactive time to response headers p50 (ms)',
    target: '',
    met: () => true,
  },
  {
    metric: 'flood_interactive_headers_p99',
    label: 'batch flood: interactive time to response headers p99 (ms)',
    target: '',
    met: () => true,
  },
  {
    metric: 'flood_interactive_p99_vs_idle',
    label: 'batch flood: interactive p99 / idle p99',
    target: '<= 1.5',
    met: (q) => q.median <= 1.5,
  },
  { metric: 'flood_interactive_refused', label: 'batch flood: interactive not served', target: '0 in every run', met: (q) => q.max === 0 },
  { metric: 'flood_interactive_requests', label: 'batch flood: interactive requests', target: '', met: () => true },
  { metric: 'flood_batch_served', label: 'batch flood: batch served', target: '', met: () => true },
  { metric: 'flood_batch_503', label: 'batch flood: batch refused (503)', target: '', met: () => true },
  { metric: 'flood_unsent', label: 'batch flood: arrivals not sent (client cap)', target: '', met: () => true },
  {
    metric: 'flood_throughput_vs_capacity',
    label: 'batch flood: completions/s / capacity',
    target: '>= 0.95',
    met: (q) => q.median >= 0.95,
  },
  {
    metric: 'flood_backend_throughput_vs_capacity',
    label: 'batch flood: backends\u2019 completions/s / capacity',
    target: '',
    met: () => true,
  },
  { metric: 'flood_backend_max_waiting', label: 'batch flood: longest vLLM waiting queue of a backend', target: '', met: () => true },
  { metric: 'flood_load_average', label: 'batch flood: machine load average (1 min) at the end', target: '', met: () => true },
  { metric: 'flood_drain_ms', label: 'batch flood: drain after the phase end (ms)', target: '', met: () => true },
  { metric: 'fairness_jain_median', label: 'fairness: Jain index per 1-s window, median', target: '>= 0.95', met: (q) => q.median >= 0.95 },
  { metric: 'fairness_jain_min', label: 'fairness: Jain index per 1-s window, min', target: '', met: () => true },
  { metric: 'fairness_share_a', label: 'fairness: standard-a share of served', target: '', met: () => true },
  { metric: 'fairness_served', label: 'fairness: served (both keys)', target: '', met: () => true },
  { metric: 'fairness_503', label: 'fairness: refused (503)', target: '', met: () => true },
  {
    metric: 'fairness_throughput_vs_capacity',
    label: 'fairness: completions/s / capacity',
    target: '>= 0.95',
    met: (q) => q.median >= 0.95,
  },
  {
    metric: 'fairness_backend_throughput_vs_capacity',
    label: 'fairness: backends\u2019 completions/s / capacity',
    target: '',
    met: () => true,
  },
  { metric: 'fairness_load_average', label: 'fairness: machine load average (1 min) at the end', target: '', met: () => true },
  { metric: 'fairness_drain_ms', label: 'fairness: drain after the phase end (ms)', target: '', met: () => true },
  { metric: 'fairness_backend_max_waiting', label: 'fairness: longest vLLM waiting queue of a backend', target: '', met: () => true },
  {
    metric: 'not_saturated_ttft_p50',
    label: 'not saturated: standard-a TTFT p50 (ms)',
    target: 'queue median <= before max',
    met: (q, b) => q.median <= b.max,
  },
  {
    metric: 'not_saturated_ttft_p99',
    label: 'not saturated: standard-a TTFT p99 (ms)',
    target: 'queue median <= before max',
    met: (q, b) => q.median <= b.max,
  },
  { metric: 'not_saturated_not_served', label: 'not saturated: not served', target: '', met: () => true },
]

/** Figures of the queue build over the before build's in the same run: paired, so the machine's drift between runs cancels. */
const PAIRED = ['flood_throughput_vs_capacity', 'fairness_throughput_vs_capacity'] as const

export function report(setup: Setup): void {
  const perRun = Object.fromEntries(BUILDS.map((build) => [build, setup.records.map((record) => figures(record[build] ?? {}, setup))]))
  const paired = Object.fromEntries(
    PAIRED.map((metric) => [
      metric.replace('_vs_capacity', '_queue_vs_before'),
      summarize(
        setup.records.map((_, run) => round((perRun.queue?.[run]?.[metric] as number) / (perRun.before?.[run]?.[metric] as number), 3)),
      ),
    ]),
  )
  const summaries = Object.fromEntries(
    BUILDS.map((build) => [
      build,
      Object.fromEntries(TARGETS.map(({ metric }) => [metric, summarize((perRun[build] ?? []).map((f) => f[metric] as number))])),
    ]),
  ) as Record<Build, Record<string, Summary>>
  const met = Object.fromEntries(
    TARGETS.filter((t) => t.target !== '').map((t) => [
      t.metric,
      t.met(summaries.queue[t.metric] as Summary, summaries.before[t.metric] as Summary),
    ]),
  )
  // What each key's requests came to, summed over runs: per phase, build and role.
  const outcomes: Record<string, Record<string, Record<string, Record<string, number>>>> = {}
  for (const record of setup.records) {
    for (const build of BUILDS) {
      for (const [phase, result] of Object.entries(record[build] ?? {})) {
        for (const role of Object.keys(setup.phases[phase as Phase]) as Role[]) {
          const into = (((outcomes[phase] ??= {})[build] ??= {})[role] ??= {})
          for (const [what, n] of Object.entries(tally(result.outcomes, role))) into[what] = (into[what] ?? 0) + n
        }
      }
    }
  }
  const loads = setup.records.flatMap((record) => BUILDS.flatMap((build) => Object.values(record[build] ?? {}).map((r) => r.load)))
  const load = { median: round(median(loads)), max: Math.max(...loads) }
  const date = new Date().toISOString()
  const json = {
    date,
    baseline_commit: setup.baselineCommit,
    queue_build: setup.queueBuild,
    capacity_rps: round(setup.capacity),
    runs: setup.runs,
    isolates: setup.isolates,
    phase_ms: setup.phaseMs,
    max_in_flight: setup.maxInFlight,
    phases: setup.phases,
    elapsed_s: setup.elapsedS,
    load_average: load,
    summary: summaries,
    paired,
    targets_met: met,
    outcomes,
  }
  const dir = join(ROOT, 'bench/results')
  writeFileSync(join(dir, 'saturation.json'), `${JSON.stringify(json, null, 2)}\n`)
  const cell = (s: Summary) => (Number.isNaN(s.median) ? 'n.a.' : `${s.median} [${s.min}-${s.max}]`)
  const lines = [
    '# The fleet saturated: before and with the edge queue',
    '',
    `${date}. Four emulated backends (max-num-seqs ${setup.maxNumSeqs}, bench:fleet's load model, \`--scheduling-policy priority\`), each build served as ${setup.isolates} isolates sharing KV and Durable Objects, side by side in one run: **before** = ${setup.baselineCommit}${setup.baselineCommit === 'bdc3c53' ? ' (no edge queue)' : ''}, **queue** = ${setup.queueBuild}.`,
    `Capacity ${round(setup.capacity)} requests/s (closed loop, ${setup.maxNumSeqs * 4} clients, through the before build). Every request is the first turn of a new bench:fleet conversation (64 max tokens). Phases of ${setup.phaseMs / 1000} s of Poisson arrivals, builds interleaved per phase (order swapped each run), backends idle and reset between phases; at most ${setup.maxInFlight} client requests in flight. Medians over ${setup.runs} runs, [min-max] over the runs; TTFT at the client (first data event), of served requests. ${Math.round(setup.elapsedS / 60)} minutes in all; the machine's 1-minute load average at the phases' ends: median ${load.median}, max ${load.max} (${cpus().length} CPUs).`,
    '',
    `Phases (share of capacity): idle: interactive 0.2; batch flood: batch 3 + interactive 0.2; fairness: standard-a 1.5 + standard-b 1.5 (weight 1 each); not saturated: standard-a 0.5. Throughput: completed streams at the client from 1 s to the last arrival, per second, over capacity (the backends' own count of completions over the whole phase beside it). Jain's index per 1-s window from 1 s on, while both standard keys had requests in flight.`,
    '',
    '| metric | before | queue | target | met? |',
    '|---|---|---|---|---|',
  ]
  for (const t of TARGETS) {
    const verdict = t.target === '' ? '' : met[t.metric] ? 'yes' : '**no**'
    lines.push(
      `| ${t.label} | ${cell(summaries.before[t.metric] as Summary)} | ${cell(summaries.queue[t.metric] as Summary)} | ${t.target} | ${verdict} |`,
    )
  }
  lines.push(
    '',
    `Throughput of the queue build over the before build's in the same run (completions/s at the client, 1 s to the last arrival): batch flood ${cell(paired.flood_throughput_queue_vs_before as Summary)}, fairness ${cell(paired.fairness_throughput_queue_vs_before as Summary)}.`,
  )
  lines.push('', 'What the requests came to, summed over the runs:', '')
  for (const [phase, byBuild] of Object.entries(outcomes)) {
    for (const [build, byRole] of Object.entries(byBuild)) {
      const parts = Object.entries(byRole).map(
        ([role, counts]) =>
          `${role}: ${Object.entries(counts)
            .sort((a, b) => b[1] - a[1])
            .map(([what, n]) => `${what} ${n}`)
            .join(', ')}`,
      )
      lines.push(`- ${phase}, ${build}: ${parts.join('; ')}`)
    }
  }
  writeFileSync(join(dir, 'saturation.md'), `${lines.join('\n')}\n`)
  console.log(lines.join('\n'))
}
