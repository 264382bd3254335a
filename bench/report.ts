// Summarizing and writing npm run bench's results: medians over runs, with each figure's
// run-to-run spread (min and max over the runs) kept next to it, so a later run can be compared
// against this one figure by figure (bench/compare.ts).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { median, round } from './stats.ts'

export const TARGET_NAMES = [
  'direct',
  'passthrough',
  'passthrough-js',
  'gateway-bare',
  'gateway-nolimits',
  'gateway',
  'gateway-responses',
  'gateway-messages',
  'gateway-budgets',
  'gateway-distant',
  'gateway-distant-wait',
] as const
export type TargetName = (typeof TARGET_NAMES)[number]

/** One target at one concurrency in one run. */
export interface LevelResult {
  ttfe_p50: number
  ttfe_p99: number
  lag_p50: number
  lag_p99: number
  /** CPU µs the target's own process(es) spent per data event the client received (direct: the emulator's). */
  cpu_us_per_event: number
  /** CPU µs the emulator spent per data event in the same window: the upstream's share, a control. */
  emulator_cpu_us_per_event: number
  /** Data events the client received in the window ([DONE] excluded). */
  events: number
}

export interface Throughput {
  events_per_s: number
  mib_per_s: number
}

type Spread<T> = { [K in keyof T]: [number, number] }
export type LevelRow = LevelResult & { spread: Spread<LevelResult> }
export type ThroughputRow = Throughput & { spread: Spread<Throughput> }

export interface BenchSettings {
  runs: number
  emulator: { ttftMs: number; itlMs: number; reasoningTokens: number; contentTokens: number }
  throughputTokens: number
  /** The round trip gateway-distant adds to each Durable Object call and KV operation. */
  distanceRttMs: number
  load: { before: number[]; after: number[] }
}

/** Median of each field over runs, and its [min, max]. */
function aggregate<T extends { [K in keyof T]: number }>(runs: readonly T[], digits = 2): T & { spread: Spread<T> } {
  const keys = Object.keys(runs[0] ?? {}) as (keyof T & string)[]
  const row: Record<string, unknown> = {}
  const spread: Record<string, [number, number]> = {}
  for (const key of keys) {
    const values = runs.map((run) => run[key])
    row[key] = round(median(values), digits)
    spread[key] = [round(Math.min(...values), digits), round(Math.max(...values), digits)]
  }
  return { ...(row as T), spread: spread as Spread<T> }
}

const cpuPerRequest = (row: LevelRow) => row.cpu_us_per_event * row.events

export function summarize(
  levels: Record<string, Record<string, LevelResult[]>>,
  throughput: Record<string, Throughput[]>,
  settings: BenchSettings,
) {
  const byLevel = Object.entries(levels).map(([concurrency, targets]) => {
    const rows = Object.fromEntries(Object.entries(targets).map(([name, runs]) => [name, aggregate(runs, 1)])) as Record<
      TargetName,
      LevelRow
    >
    const added = (name: TargetName) => rows[name].ttfe_p50 - rows.direct.ttfe_p50
    return {
      concurrency: Number(concurrency),
      targets: rows,
      added_ttfe_p50_ms: {
        passthrough: round(added('passthrough')),
        'passthrough-js': round(added('passthrough-js')),
        'gateway-bare': round(added('gateway-bare')),
        'gateway-nolimits': round(added('gateway-nolimits')),
        gateway: round(added('gateway')),
        'gateway-responses': round(added('gateway-responses')),
        'gateway-messages': round(added('gateway-messages')),
        'gateway-budgets': round(added('gateway-budgets')),
        'gateway-distant': round(added('gateway-distant')),
        'gateway-distant-wait': round(added('gateway-distant-wait')),
      },
      added_ttfe_ratio: round(added('gateway') / added('passthrough')),
      added_ttfe_ratio_vs_js: round(added('gateway') / added('passthrough-js')),
      /** Issue 15: gateway-distant added minus passthrough added (target <= 2 ms at c=1 with 30 ms round trips). */
      distant_minus_passthrough_ms: round(added('gateway-distant') - added('passthrough')),
      /** What speculative admission saves at that distance: gateway-distant-wait p50 minus gateway-distant p50. */
      speculation_saves_ms: round(rows['gateway-distant-wait'].ttfe_p50 - rows['gateway-distant'].ttfe_p50),
      /** What auth, validation and prompt normalization add to the p50 TTFE (issue 3: <= 0.3 ms). */
      request_checks_ttfe_p50_ms: round(rows['gateway-nolimits'].ttfe_p50 - rows['gateway-bare'].ttfe_p50),
      /** What rate-limit admission (a Durable Object call) adds to the p50 TTFE (issue 4: <= 0.5 ms). */
      admission_ttfe_p50_ms: round(rows.gateway.ttfe_p50 - rows['gateway-nolimits'].ttfe_p50),
      /** What the Responses translation adds to the time to the first token event, beside chat (issue 17). */
      responses_ttfe_p50_ms: round(rows['gateway-responses'].ttfe_p50 - rows.gateway.ttfe_p50),
      /**
       * Responses CPU per request over chat's, the same process on the same upstream stream: per
       * request, since the two APIs send a different number of events for the same chunks.
       */
      responses_cpu_ratio: round(cpuPerRequest(rows['gateway-responses']) / cpuPerRequest(rows.gateway)),
      /**
       * What the Messages translation adds to the time to the first content_block_delta, beside chat
       * (issue 30); null in a result from before gateway-messages.
       */
      messages_ttfe_p50_ms: round(rows['gateway-messages'].ttfe_p50 - rows.gateway.ttfe_p50),
      /** Messages CPU per request over chat's, as responses_cpu_ratio (issue 30). */
      messages_cpu_ratio: round(cpuPerRequest(rows['gateway-messages']) / cpuPerRequest(rows.gateway)),
      /** What a key's token budgets add to the p50 TTFE, beside the same process's key without (issue 31: within the spread). */
      budgets_ttfe_p50_ms: round(rows['gateway-budgets'].ttfe_p50 - rows.gateway.ttfe_p50),
    }
  })
  const relay = Object.fromEntries(Object.entries(throughput).map(([name, runs]) => [name, aggregate(runs)])) as Record<
    string,
    ThroughputRow
  >
  return { date: new Date().toISOString(), ...settings, levels: byLevel, throughput: relay }
}

export type Summary = ReturnType<typeof summarize>

/** A figure as printed: '–' for one a target does not have (the Responses and Messages lag; null once read back from JSON). */
const shown = (value: number | null) => (value === null || Number.isNaN(value) ? '–' : String(value))
const range = ([min, max]: [number, number]) => (shown(min) === '–' ? '–' : `${min}–${max}`)

function header(summary: Summary): string[] {
  const { emulator } = summary
  return [
    '# Baseline: streaming overhead of the gateway',
    '',
    `${summary.date}. Medians over ${summary.runs} runs, all ${TARGET_NAMES.length} targets measured side by side in each run against one emulator`,
    `(TTFT ${emulator.ttftMs} ms, ${emulator.itlMs} ms between tokens, ${emulator.reasoningTokens + emulator.contentTokens} tokens).`,
    `Load average (1, 5, 15 min) at the start: ${summary.load.before.join(', ')}; at the end: ${summary.load.after.join(', ')} (2 cores, shared).`,
    'Times in ms. TTFE: time from sending the request to the first data event. Lag: time from the emulator writing an event to the client reading it.',
    'Added TTFE: p50 TTFE minus the direct p50. Ratio: gateway added / passthrough added (target <= 1.3);',
    'ratio vs JS floor: gateway added / passthrough-js added. Auth + validation + normalization: gateway-nolimits p50 minus gateway-bare p50.',
    'Admission (rate limits): gateway p50 minus gateway-nolimits p50 (target <= 0.5 ms).',
    `gateway-distant: the gateway with ${summary.distanceRttMs} ms added to every Durable Object call and KV operation (bench/distance-worker.ts);`,
    'distant minus passthrough: its added TTFE minus the passthrough added (issue 15 target at c=1: <= 2 ms with 30 ms round trips).',
    'gateway-distant-wait: the same with SPECULATIVE_ADMISSION=off; speculation saves: its TTFE p50 minus gateway-distant p50.',
    'CPU/event: CPU time (user + system, from /proc) of the workerd process serving the target, over the level, divided by the',
    'data events the client received; for direct it is the emulator (no Worker). Range: min–max over the runs.',
    "Emulator CPU/event: the emulator's own CPU in the same window (the upstream's share, the same work for every target: a control).",
    'gateway-responses: the gateway target on POST /v1/responses (stream: true); its TTFE is to the first token event (a reasoning_text',
    'delta), its CPU/event per token event (reasoning_text or output_text delta), and it has no lag figures (no chatcmpl id to match).',
    'Responses added: its TTFE p50 minus the gateway p50. Responses CPU ratio: its CPU per request over the gateway CPU per request',
    '(CPU/event times events; the same upstream chunks, which chat relays as 43 data events and Responses as 40 token events and more).',
    'gateway-messages: the gateway target on POST /v1/messages (stream: true, thinking adaptive, x-api-key); its TTFE is to the first',
    'content_block_delta carrying generation (a thinking_delta; message_start and ping come before any token and carry none), its',
    'CPU/event per thinking_delta or text_delta (one per upstream token chunk), and no lag figures. Messages added and Messages CPU',
    'ratio: as for Responses, against the gateway (chat) target served by the same process in the same run.',
    'The issue-14 criterion is the concurrency-64 rows. Wall-clock figures move with other load on the machine far more than CPU/event.',
    '',
    '| concurrency | target | TTFE p50 | TTFE p99 | lag p50 | lag p99 | added TTFE p50 | CPU µs/event | CPU range | emulator µs/event |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
}

function levelLines(level: Summary['levels'][number]): string[] {
  const lines: string[] = []
  for (const name of TARGET_NAMES) {
    const row = level.targets[name]
    const added = name === 'direct' ? '' : String(level.added_ttfe_p50_ms[name])
    const cpu = name === 'direct' ? `${row.cpu_us_per_event} (emulator)` : String(row.cpu_us_per_event)
    lines.push(
      `| ${level.concurrency} | ${name} | ${row.ttfe_p50} | ${row.ttfe_p99} | ${shown(row.lag_p50)} | ${shown(row.lag_p99)} | ${added} | ${cpu} | ${range(row.spread.cpu_us_per_event)} | ${row.emulator_cpu_us_per_event} |`,
    )
  }
  const derived: [string, number][] = [
    ['ratio', level.added_ttfe_ratio],
    ['ratio vs JS floor', level.added_ttfe_ratio_vs_js],
    ['auth + validation + normalization', level.request_checks_ttfe_p50_ms],
    ['admission (rate limits)', level.admission_ttfe_p50_ms],
    ['Responses added (vs gateway)', level.responses_ttfe_p50_ms],
    ['Responses CPU per request ratio (vs gateway)', level.responses_cpu_ratio],
    ['Messages added (vs gateway)', level.messages_ttfe_p50_ms],
    ['Messages CPU per request ratio (vs gateway)', level.messages_cpu_ratio],
    ['budgets added (vs gateway)', level.budgets_ttfe_p50_ms],
    ['distant minus passthrough', level.distant_minus_passthrough_ms],
    ['speculation saves (distant)', level.speculation_saves_ms],
  ]
  for (const [label, value] of derived) lines.push(`| ${level.concurrency} | **${label}** | | | | | **${value}** | | | |`)
  return lines
}

function spreadLines(summary: Summary): string[] {
  const lines = [
    '',
    'Run-to-run spread (min–max over the runs) of the wall-clock figures:',
    '',
    '| concurrency | target | TTFE p50 | TTFE p99 | lag p50 | lag p99 |',
    '|---|---|---|---|---|---|',
  ]
  for (const level of summary.levels) {
    for (const name of TARGET_NAMES) {
      const { spread } = level.targets[name]
      lines.push(
        `| ${level.concurrency} | ${name} | ${range(spread.ttfe_p50)} | ${range(spread.ttfe_p99)} | ${range(spread.lag_p50)} | ${range(spread.lag_p99)} |`,
      )
    }
  }
  return lines
}

function throughputLines(summary: Summary): string[] {
  const lines = [
    '',
    `Relay throughput, one stream of ${summary.throughputTokens} tokens with no delay between them:`,
    '',
    '| target | events/s | range | MiB/s |',
    '|---|---|---|---|',
  ]
  for (const [name, row] of Object.entries(summary.throughput))
    lines.push(`| ${name} | ${Math.round(row.events_per_s)} | ${range(row.spread.events_per_s)} | ${row.mib_per_s} |`)
  return lines
}

/** Writes bench/results/<name>.json and .md and prints the table. */
export function report(summary: Summary, dir: string, name: string): void {
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(summary, null, 2)}\n`)
  const lines = [...header(summary), ...summary.levels.flatMap(levelLines), ...throughputLines(summary), ...spreadLines(summary)]
  writeFileSync(join(dir, `${name}.md`), `${lines.join('\n')}\n`)
  console.log(lines.join('\n'))
}
