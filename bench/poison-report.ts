// bench:poison's results: the steady key's success and TTFT with and without the poison key, what
// the poison got, each backend's time out of rotation, and the lag scenario's 1-s windows, written
// to bench/results/<name>.{json,md} as bench/fleet-report.ts writes bench:fleet's.
import { writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import type { Outcome } from './fleet-traffic.ts'
import type { PoisonOutcome } from './poison-traffic.ts'
import { median, percentile, round } from './stats.ts'

export interface PhaseRecord {
  steady: Outcome[]
  poison: PoisonOutcome[]
  /** Seconds each backend was out of rotation during the phase (bench/poison-traffic.ts watchRotation). */
  outOfRotationS: number[]
}

export interface LagResult {
  /** performance.now() when the load began; outcomes' sentAt are on the same clock. */
  begin: number
  outcomes: Outcome[]
  /** When the config changes were answered by every backend, ms after the start. */
  lagOnAnsweredMs: number | null
  lagOffAnsweredMs: number | null
}

export interface Setup {
  name: string
  bundle: string
  capacity: number
  /** BENCH_CAPACITY gave it (another run's measurement) rather than this run's probe. */
  capacityGiven: boolean
  level: number
  runs: number
  phaseMs: number
  preprocessMsPerToken: number
  slowPromptTokens: number
  steadyOpeningChars: number
  poisonConcurrency: number
  cooldownMs: number
  headersTimeoutMs: number
  lag: { runMs: number; fromMs: number; toMs: number; lagMs: number }
  elapsedS: number
}

const succeeded = (o: Outcome) => o.status === 200 && !o.failedBeforeData && !o.failedMidStream

/** Failed requests counted by what they got: "503 backends_unavailable", "200 then error event ...", "no answer". */
function failuresOf(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of outcomes.filter((x) => !succeeded(x))) {
    const label = o.status === null ? 'no answer' : `${o.status}${o.error ? ` ${o.error}` : ''}`
    counts[label] = (counts[label] ?? 0) + 1
  }
  return counts
}
const ttftsOf = (outcomes: Outcome[]) => outcomes.flatMap((o) => (succeeded(o) && o.ttftMs !== null ? [o.ttftMs] : []))

/** The steady key over one phase: how many got a complete stream, TTFT of those, and the failures by kind. */
function steadySummary(outcomes: Outcome[]) {
  const ttfts = ttftsOf(outcomes)
  return {
    requests: outcomes.length,
    succeeded: outcomes.filter(succeeded).length,
    success_rate: round(outcomes.length === 0 ? Number.NaN : outcomes.filter(succeeded).length / outcomes.length, 4),
    ttft_p50: round(percentile(ttfts, 50)),
    ttft_p99: round(percentile(ttfts, 99)),
    status_503: outcomes.filter((o) => o.status === 503).length,
    other_non_200: outcomes.filter((o) => o.status !== null && o.status !== 200 && o.status !== 503).length,
    /** 200, then an error event or a cut stream. */
    failed_after_200: outcomes.filter((o) => o.status === 200 && !succeeded(o)).length,
    no_answer: outcomes.filter((o) => o.status === null).length,
    failures: failuresOf(outcomes),
  }
}
type SteadySummary = ReturnType<typeof steadySummary>

/** The poison key's outcomes, counted by status and error code ("504 upstream_headers_timeout"). */
function poisonCounts(outcomes: PoisonOutcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of outcomes) {
    const label = `${o.shape}: ${o.status}${o.code ? ` ${o.code}` : ''}`
    counts[label] = (counts[label] ?? 0) + 1
  }
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)))
}

function sumSteady(runs: SteadySummary[], pooled: Outcome[]) {
  const total = (key: 'requests' | 'succeeded' | 'status_503' | 'other_non_200' | 'failed_after_200' | 'no_answer') =>
    runs.reduce((sum, r) => sum + r[key], 0)
  const ttfts = ttftsOf(pooled)
  return {
    requests: total('requests'),
    success_rate: round(total('succeeded') / Math.max(1, total('requests')), 4),
    ttft_p50_median: round(median(runs.map((r) => r.ttft_p50))),
    ttft_p99_median: round(median(runs.map((r) => r.ttft_p99))),
    ttft_p99_runs: runs.map((r) => r.ttft_p99),
    ttft_p99_pooled: round(percentile(ttfts, 99)),
    status_503: total('status_503'),
    other_non_200: total('other_non_200'),
    failed_after_200: total('failed_after_200'),
    no_answer: total('no_answer'),
    failures: failuresOf(pooled),
  }
}

function summarizeIsolates(runs: { baseline: PhaseRecord; poison: PhaseRecord }[]) {
  const baseline = runs.map((r) => steadySummary(r.baseline.steady))
  const poison = runs.map((r) => steadySummary(r.poison.steady))
  const b = sumSteady(
    baseline,
    runs.flatMap((r) => r.baseline.steady),
  )
  const p = sumSteady(
    poison,
    runs.flatMap((r) => r.poison.steady),
  )
  const ratios = runs.map((_, i) => (poison[i]?.ttft_p99 ?? Number.NaN) / (baseline[i]?.ttft_p99 ?? Number.NaN))
  const sumOut = (phase: 'baseline' | 'poison') =>
    runs.reduce<number[]>((sums, r) => r[phase].outOfRotationS.map((s, i) => round((sums[i] ?? 0) + s)), [])
  const poisonOutcomes = runs.flatMap((r) => r.poison.poison)
  return {
    steady_baseline: b,
    steady_poison: p,
    p99_ratio_median: round(median(ratios)),
    p99_ratio_runs: ratios.map((r) => round(r)),
    p99_ratio_pooled: round(p.ttft_p99_pooled / b.ttft_p99_pooled),
    poison_requests: poisonOutcomes.length,
    poison_outcomes: poisonCounts(poisonOutcomes),
    poison_ms_median: round(median(poisonOutcomes.filter((o) => o.status !== 429).map((o) => o.ms))),
    out_of_rotation_s: { baseline: sumOut('baseline'), poison: sumOut('poison') },
    out_of_rotation_runs_s: runs.map((r) => ({ baseline: r.baseline.outOfRotationS, poison: r.poison.outOfRotationS })),
  }
}

/** Scenario 2 in 1-s windows by send time, and its summary. */
function summarizeLag(setup: Setup, lag: LagResult) {
  const seconds = Math.ceil(setup.lag.runMs / 1000)
  const inWindow = (from: number, to: number) =>
    lag.outcomes.filter((o) => o.sentAt - lag.begin >= from * 1000 && o.sentAt - lag.begin < to * 1000)
  const windows = Array.from({ length: seconds }, (_, s) => {
    const sent = inWindow(s, s + 1)
    return {
      second: s,
      sent: sent.length,
      succeeded: sent.filter(succeeded).length,
      status_503: sent.filter((o) => o.status === 503).length,
      other_failures: sent.filter((o) => !succeeded(o) && o.status !== 503).length,
      ttft_p50: round(percentile(ttftsOf(sent), 50)),
    }
  })
  const from = setup.lag.fromMs / 1000
  const to = setup.lag.toMs / 1000
  const preLagP50 = percentile(ttftsOf(inWindow(0, from)), 50)
  // The first 2-s window after the lag's end with every request served and p50 within 1.5x the pre-lag p50.
  let recoveryS: number | null = null
  for (let s = to; s + 2 <= seconds; s++) {
    const sent = inWindow(s, s + 2)
    if (sent.length > 0 && sent.every(succeeded) && percentile(ttftsOf(sent), 50) <= 1.5 * preLagP50) {
      recoveryS = s - to
      break
    }
  }
  const count503 = (a: number, b: number) => inWindow(a, b).filter((o) => o.status === 503).length
  const failures = (a: number, b: number) => inWindow(a, b).filter((o) => !succeeded(o)).length
  return {
    pre_lag_ttft_p50: round(preLagP50),
    status_503_during: count503(from, to),
    status_503_after: count503(to, seconds),
    failures_during: failures(from, to),
    failures_after: failures(to, seconds),
    failures_during_by_answer: failuresOf(inWindow(from, to)),
    failures_after_by_answer: failuresOf(inWindow(to, seconds)),
    recovery_s: recoveryS,
    recovered_within_cooldown: recoveryS !== null && recoveryS * 1000 <= setup.cooldownMs,
    lag_on_answered_ms: lag.lagOnAnsweredMs,
    lag_off_answered_ms: lag.lagOffAnsweredMs,
    windows,
  }
}

const pct = (rate: number) => `${round(rate * 100, 2)}%`
const statuses = (counts: Record<string, number>) =>
  Object.entries(counts)
    .map(([answer, count]) => `${answer}: ${count}`)
    .join(', ') || 'none'
/** A window's p50 when it served nothing: a dash. */
const ms = (value: number) => (Number.isNaN(value) ? '-' : String(value))

function markdown(
  setup: Setup,
  date: string,
  isolates: Record<string, ReturnType<typeof summarizeIsolates>>,
  lag: Record<string, ReturnType<typeof summarizeLag>>,
): string[] {
  const lines = [
    `# Poison requests (npm run bench:poison): ${setup.name}`,
    '',
    `${date}, gateway: ${setup.bundle}. Whole run ${setup.elapsedS} s on a shared 2-core machine (load average ${loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')} at the end).`,
    `Four emulated backends (bench:fleet's load model) that also preprocess ${setup.preprocessMsPerToken} ms per prompt token before the response headers; rate limits on; smart routing.`,
    `Capacity ${round(setup.capacity)} requests/s (${setup.capacityGiven ? "given by BENCH_CAPACITY: another run's probe" : 'closed loop, one isolate, preprocessing off'}). The steady key (roomy limits) sends multi-turn conversation turns, openings cut to ${setup.steadyOpeningChars} characters (~50-100 prompt tokens, ~0.1 s of preprocessing), open loop at ${setup.level * 100}% of it.`,
    `Poison phases add a key at the default limits (60 requests/minute, 8 streams) sending closed loop, ${setup.poisonConcurrency} in flight, in turn: \`[emulator fault=hang]\` (no headers ever) and a ${setup.slowPromptTokens}-token prompt (preprocessing ~${round((setup.slowPromptTokens * setup.preprocessMsPerToken) / 1000, 1)} s, past the ${setup.headersTimeoutMs / 1000} s headers deadline); on a 429 it waits what retry-after-ms says, 0.1-1 s.`,
    `Baseline and poison phases of ${setup.phaseMs / 1000} s alternate, ${setup.runs} runs per isolate count, ${setup.cooldownMs / 1000 + 2} s pause after each poison phase. Success: a complete stream. TTFT (ms, client, served requests): medians over runs; pooled: over all runs' requests.`,
    '',
    '## The steady key with and without the poison',
    '',
    '| isolates | phase | requests | success rate | TTFT p50 | TTFT p99 (runs) | pooled p99 | 503 | other non-200 | failed after 200 | no answer |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (const [n, s] of Object.entries(isolates)) {
    for (const [phase, r] of [
      ['baseline', s.steady_baseline],
      ['poison', s.steady_poison],
    ] as const) {
      lines.push(
        `| ${n} | ${phase} | ${r.requests} | ${pct(r.success_rate)} | ${r.ttft_p50_median} | ${r.ttft_p99_median} (${r.ttft_p99_runs.join(', ')}) | ${r.ttft_p99_pooled} | ${r.status_503} | ${r.other_non_200} | ${r.failed_after_200} | ${r.no_answer} |`,
      )
    }
  }
  lines.push('', "The steady key's failures by what it got, all runs:", '')
  for (const [n, s] of Object.entries(isolates)) {
    lines.push(`- ${n} isolate(s): baseline ${statuses(s.steady_baseline.failures)}; poison ${statuses(s.steady_poison.failures)}.`)
  }
  lines.push('', 'Targets: success rate under poison 100%; p99 poison / baseline <= 1.2.', '')
  for (const [n, s] of Object.entries(isolates)) {
    lines.push(
      `- ${n} isolate(s): success rate under poison **${pct(s.steady_poison.success_rate)}**; p99 ratio **${s.p99_ratio_median}** (median of runs ${s.p99_ratio_runs.join(', ')}), pooled **${s.p99_ratio_pooled}**.`,
    )
  }
  lines.push(
    '',
    '## What the poison key got',
    '',
    'Counted over all poison phases by shape, status and error code (`cut`: still running when the phase ended).',
    '',
  )
  for (const [n, s] of Object.entries(isolates)) {
    const counts = Object.entries(s.poison_outcomes)
      .map(([label, count]) => `${label} x${count}`)
      .join('; ')
    lines.push(`- ${n} isolate(s): ${s.poison_requests} requests, median ${s.poison_ms_median} ms to their end (429s aside): ${counts}.`)
  }
  lines.push(
    '',
    '## Out of rotation',
    '',
    "Each backend's /emulator/stats polled every 250 ms; the fleet's new requests are summed over polls until they reach 8, and a backend that got none of them was out of rotation for that span. Seconds summed over the runs' phases (per run in the .json). In a baseline phase it is the rule's noise (a backend can miss 8 requests by chance, about 10% of spans if spread evenly) or what the previous poison phase left behind.",
    '',
    '| isolates | phase | backend 1 | backend 2 | backend 3 | backend 4 |',
    '|---|---|---|---|---|---|',
  )
  for (const [n, s] of Object.entries(isolates)) {
    lines.push(`| ${n} | baseline | ${s.out_of_rotation_s.baseline.join(' | ')} |`)
    lines.push(`| ${n} | poison | ${s.out_of_rotation_s.poison.join(' | ')} |`)
  }
  if (Object.keys(lag).length > 0) {
    const { runMs, fromMs, toMs, lagMs } = setup.lag
    lines.push(
      '',
      '## Scenario 2: every backend late',
      '',
      `The steady key alone at ${setup.level * 100}% for ${runMs / 1000} s; at ${fromMs / 1000} s every backend's API server starts lagging ${lagMs / 1000} s (\`apiServerLagMs\`, /health included), at ${toMs / 1000} s it stops. Back to normal: the first 2-s window after the lag's end (by send time) with every request served and TTFT p50 within 1.5x the pre-lag p50; against the circuit cool-down (${setup.cooldownMs / 1000} s).`,
      '',
      '| isolates | pre-lag p50 | 503 during | 503 after | failures during (by answer) | failures after (by answer) | back to normal after | within one cool-down |',
      '|---|---|---|---|---|---|---|---|',
    )
    for (const [n, l] of Object.entries(lag)) {
      lines.push(
        `| ${n} | ${l.pre_lag_ttft_p50} | ${l.status_503_during} | ${l.status_503_after} | ${l.failures_during} (${statuses(l.failures_during_by_answer)}) | ${l.failures_after} (${statuses(l.failures_after_by_answer)}) | ${l.recovery_s === null ? 'not within the run' : `${l.recovery_s} s`} | ${l.recovered_within_cooldown ? 'yes' : 'no'} |`,
      )
    }
    for (const [n, l] of Object.entries(lag)) {
      lines.push(
        '',
        `${n} isolate(s), per 1-s window by send time:`,
        '',
        '| s | sent | succeeded | 503 | other failures | TTFT p50 |',
        '|---|---|---|---|---|---|',
      )
      for (const w of l.windows)
        lines.push(`| ${w.second} | ${w.sent} | ${w.succeeded} | ${w.status_503} | ${w.other_failures} | ${ms(w.ttft_p50)} |`)
    }
  }
  return lines
}

/** Writes bench/results/<setup.name>.{json,md} and prints the markdown. */
export function report(
  setup: Setup,
  phases: Record<string, { baseline: PhaseRecord; poison: PhaseRecord }[]>,
  lagRuns: Record<string, LagResult>,
): void {
  const date = new Date().toISOString()
  const isolates = Object.fromEntries(Object.entries(phases).map(([n, runs]) => [n, summarizeIsolates(runs)]))
  const lag = Object.fromEntries(Object.entries(lagRuns).map(([n, run]) => [n, summarizeLag(setup, run)]))
  const json = { date, setup: { ...setup, capacity: round(setup.capacity) }, isolates, lag }
  const dir = join(ROOT, 'bench/results')
  writeFileSync(join(dir, `${setup.name}.json`), `${JSON.stringify(json, null, 2)}\n`)
  const lines = markdown(setup, date, isolates, lag)
  writeFileSync(join(dir, `${setup.name}.md`), `${lines.join('\n')}\n`)
  console.log(lines.join('\n'))
}
