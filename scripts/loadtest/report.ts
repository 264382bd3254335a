// The load test's results: one JSON document (--json) or tables for people. Both come from the
// same Report, so they always agree. The API key is never part of it.
import { endpointOf } from './client.ts'
import type { Settings } from './options.ts'
import { requestsPerRun } from './runner.ts'
import { PERCENTILE_METHOD, RUN_METRICS, summarizeRuns, type RunMetric, type RunSummary, type Spread } from './stats.ts'

export interface Report {
  endpoint: string
  model: string
  /** `requests` counts every run's: the runs split it (`requestsPerRun`). */
  settings: {
    concurrency: number
    requests: number
    runs: number
    requestsPerRun: number[]
    maxTokens: number
    timeoutMs: number
    prompt: string
  }
  percentiles: typeof PERCENTILE_METHOD
  runs: RunSummary[]
  /** Mean and sample standard deviation of each per-run figure. */
  acrossRuns: Record<RunMetric, Spread>
  /** Failed requests of all runs, by kind. */
  errors: { total: number; byKind: Record<string, number>; examples: Record<string, string> }
}

export function buildReport(settings: Settings, model: string, runs: RunSummary[]): Report {
  const byKind: Record<string, number> = {}
  const examples: Record<string, string> = {}
  for (const run of runs) {
    for (const [kind, count] of Object.entries(run.errors.byKind)) byKind[kind] = (byKind[kind] ?? 0) + count
    for (const [kind, message] of Object.entries(run.errors.examples)) examples[kind] ??= message
  }
  const { concurrency, requests, maxTokens, timeoutMs, prompt } = settings
  return {
    endpoint: endpointOf(settings.baseUrl, 'chat/completions'),
    model,
    settings: {
      concurrency,
      requests,
      runs: settings.runs,
      requestsPerRun: requestsPerRun(requests, settings.runs),
      maxTokens,
      timeoutMs,
      prompt,
    },
    percentiles: PERCENTILE_METHOD,
    runs,
    acrossRuns: summarizeRuns(runs),
    errors: { total: runs.reduce((sum, run) => sum + run.errors.total, 0), byKind, examples },
  }
}

/** The JSON document: milliseconds and rates rounded to 0.001, which is below what is measurable. */
export function formatJson(report: Report): string {
  return JSON.stringify(
    report,
    (_key, value: unknown) => (typeof value === 'number' && !Number.isInteger(value) ? Math.round(value * 1000) / 1000 : value),
    2,
  )
}

const LABELS: Record<RunMetric, string> = {
  ttftP50Ms: 'TTFT p50 (ms)',
  ttftP99Ms: 'TTFT p99 (ms)',
  itlP50Ms: 'ITL p50 (ms)',
  itlP99Ms: 'ITL p99 (ms)',
  tokensPerSecondPerRequest: 'tokens/s per request',
  aggregateTokensPerSecond: 'tokens/s aggregate',
  errors: 'errors',
}

/** The per-run table's figures, in its column order. */
const PER_RUN: RunMetric[] = ['ttftP50Ms', 'ttftP99Ms', 'itlP50Ms', 'itlP99Ms', 'tokensPerSecondPerRequest', 'aggregateTokensPerSecond']

export function formatHuman(report: Report): string {
  const { settings } = report
  const lines = [
    `Load test of ${report.endpoint}, model ${report.model}`,
    `${requestsLine(settings)}, concurrency ${settings.concurrency}, max_tokens ${settings.maxTokens}, timeout ${settings.timeoutMs} ms; percentiles by nearest rank`,
    '',
    table(
      ['run', 'ok', 'errors', 'TTFT p50', 'TTFT p99', 'ITL p50', 'ITL p99', 'tok/s req', 'tok/s all', 'wall s'],
      report.runs.map((run) => [
        String(run.run),
        `${run.succeeded}/${run.requests}`,
        String(run.errors.total),
        ...PER_RUN.map((name) => fixed(RUN_METRICS[name](run))),
        fixed(run.wallMs / 1000),
      ]),
    ),
    'TTFT and ITL in ms; tok/s req: mean decode rate of a request; tok/s all: completion tokens / wall time',
  ]
  // The spread across runs, when there are runs to compare (--runs 2 or more).
  if (report.runs.length > 1)
    lines.push(
      '',
      table(
        [`across ${report.runs.length} runs`, 'mean', 'sd'],
        (Object.keys(LABELS) as RunMetric[]).map((name) => {
          const spread = report.acrossRuns[name]
          return [
            LABELS[name] + (spread.runs < report.runs.length ? ` (${spread.runs} of ${report.runs.length} runs)` : ''),
            fixed(spread.mean),
            fixed(spread.sd),
          ]
        }),
      ),
    )
  lines.push('', ...errorLines(report))
  return lines.join('\n')
}

function errorLines(report: Report): string[] {
  const { total, byKind, examples } = report.errors
  const requests = report.settings.requests
  if (total === 0) return [`No errors in ${requests} requests.`]
  const lines = [`${total} of ${requests} requests failed:`]
  for (const [kind, count] of Object.entries(byKind).sort((a, b) => b[1] - a[1]))
    lines.push(`  ${kind}  ${count}  (first: ${examples[kind] ?? '-'})`)
  if (byKind.http_401 !== undefined || byKind.http_403 !== undefined) {
    lines.push('The endpoint refused the API key (401/403): check --key, LOADTEST_API_KEY or OPENAI_API_KEY.')
  }
  if (byKind.http_429 !== undefined) {
    lines.push("Rate limited (429): through this Worker, raise the key's limits (npm run keys -- limits ID --rpm N --tpm N --streams N).")
  }
  if (byKind.timeout !== undefined) lines.push('Timeouts: raise --timeout-ms, lower --max-tokens or --concurrency, or check the endpoint.')
  return lines
}

/** `20 requests in 1 run`, `20 requests in 3 runs (7, 7, 6)`, `100 requests in 5 runs of 20`. */
function requestsLine(settings: Report['settings']): string {
  const { requests, runs, requestsPerRun: counts } = settings
  if (runs === 1) return `${requests} request${requests === 1 ? '' : 's'} in 1 run`
  const even = counts.every((count) => count === counts[0])
  return `${requests} requests in ${runs} runs ${even ? `of ${counts[0]}` : `(${counts.join(', ')})`}`
}

/** Two decimals; `-` for a figure that does not exist (no successful request, a single run's sd). */
function fixed(value: number | null): string {
  return value === null ? '-' : value.toFixed(2)
}

/** Columns padded to their widest cell: the first left-aligned, the numbers right-aligned. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)))
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)))
      .join('  ')
      .trimEnd()
  return [header, ...rows].map(line).join('\n')
}
