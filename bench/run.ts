// npm run bench: the gateway's streaming overhead, side by side in one run, against one emulator:
//   direct       the emulator itself (no Worker)
//   passthrough     a trivial Worker that returns the upstream response as is (the floor)
//   passthrough-js  the same, but each chunk passes through an identity TransformStream in JS
//                   (the floor for any Worker that inspects the stream, as a relay must)
//   gateway-bare    this Worker's relay without auth, validation and prompt normalization
//   gateway-nolimits this Worker with RATE_LIMITS=off (no admission)
//   gateway         this Worker
// Both Workers are built bundles served by workerd through Miniflare, never through wrangler dev.
// Writes bench/results/baseline.json and bench/results/baseline.md. Bounded in count and time.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, serveWorker, spawnEmulator } from '../scripts/stack.ts'
import { runPool, timeStream, type StreamSample } from './client.ts'
import { median, percentile, round } from './stats.ts'

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const LEVELS = [
  { concurrency: 1, requests: 30 },
  { concurrency: 16, requests: 96 },
  { concurrency: 64, requests: 192 },
]
const THROUGHPUT_TOKENS = 20_000
const THROUGHPUT_MAX_TOKENS = 30_000
const TIME_LIMIT_MS = 15 * 60_000
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const KEY = 'bench-backend-key'
/** The gateway's API key for the benchmark client (the pass-throughs ignore it). */
const CLIENT_KEY = `sk-${'b'.repeat(43)}`
const EMULATOR = { ttftMs: 20, itlMs: 5, reasoningTokens: 24, contentTokens: 16 }

const TARGET_NAMES = ['direct', 'passthrough', 'passthrough-js', 'gateway-bare', 'gateway-nolimits', 'gateway'] as const
type TargetName = (typeof TARGET_NAMES)[number]

/** Limits the benchmark never reaches, so admission is measured and never refuses. */
const ROOMY_LIMITS = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 1_000, maxOutputTokens: null }

interface Target {
  name: TargetName
  url: string
  /** The Authorization the target expects: the backend key, or the gateway's own API key. */
  key: string
}

interface LevelResult {
  ttfe_p50: number
  ttfe_p99: number
  lag_p50: number
  lag_p99: number
}

const startedAt = Date.now()
function checkTime(): void {
  if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error(`benchmark exceeded ${TIME_LIMIT_MS / 60_000} minutes`)
}

function chatRequest(prompt: string) {
  return { model: MODEL, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: prompt }] }
}

async function eventTimes(emulatorUrl: string, id: string): Promise<number[]> {
  const response = await fetch(`${emulatorUrl}/emulator/event-times?id=${encodeURIComponent(id)}`)
  if (!response.ok) throw new Error(`no event times for ${id}`)
  return ((await response.json()) as { times: number[] }).times
}

async function measureLevel(target: Target, emulatorUrl: string, concurrency: number, requests: number): Promise<LevelResult> {
  const url = `${target.url}/v1/chat/completions`
  const samples: StreamSample[] = await runPool(requests, concurrency, () =>
    timeStream(url, chatRequest('Benchmark prompt: what is 7 * 6?'), { authorization: `Bearer ${target.key}` }),
  )
  const ttfe = samples.map((sample) => (sample.arrivals[0] ?? Number.NaN) - sample.sentAt)
  const lags: number[] = []
  for (const sample of samples) {
    const sent = await eventTimes(emulatorUrl, sample.id)
    sample.arrivals.forEach((arrival, i) => {
      const sendTime = sent[i]
      if (sendTime !== undefined) lags.push(arrival - sendTime)
    })
  }
  return { ttfe_p50: percentile(ttfe, 50), ttfe_p99: percentile(ttfe, 99), lag_p50: percentile(lags, 50), lag_p99: percentile(lags, 99) }
}

async function measureThroughput(target: Target): Promise<{ events_per_s: number; mib_per_s: number }> {
  const prompt = `[emulator itl_ms=0 ttft_ms=0 reasoning_tokens=${THROUGHPUT_TOKENS} content_tokens=16]`
  const request = { ...chatRequest(prompt), max_tokens: THROUGHPUT_MAX_TOKENS }
  const sample = await timeStream(`${target.url}/v1/chat/completions`, request, { authorization: `Bearer ${target.key}` })
  const seconds = ((sample.arrivals.at(-1) ?? 0) - sample.sentAt) / 1000
  return { events_per_s: sample.arrivals.length / seconds, mib_per_s: sample.bytes / 1024 / 1024 / seconds }
}

function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length] as T)
}

async function main(): Promise<void> {
  // The two builds share dist/, so one after the other.
  const buildBoth = async () => [await buildWorker(), await buildWorker({ script: 'bench/bare-worker.ts', outdir: 'bare' })] as const
  const [[script, bareScript], emulator] = await Promise.all([
    buildBoth(),
    spawnEmulator([
      '--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1', '--api-key', KEY, '--record-event-times',
      // Room for the throughput stream: the default 4096 would end it after ~4,000 tokens.
      '--max-model-len', '32768',
      '--ttft-ms', String(EMULATOR.ttftMs), '--itl-ms', String(EMULATOR.itlMs),
      '--reasoning-tokens', String(EMULATOR.reasoningTokens), '--content-tokens', String(EMULATOR.contentTokens),
    ]),
  ])
  const keys = [{ secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS } }]
  const gateway = await serveWorker(script, { BACKEND_URLS: emulator.url, BACKEND_API_KEY: KEY }, { keys })
  const gatewayNoLimits = await serveWorker(script, { BACKEND_URLS: emulator.url, BACKEND_API_KEY: KEY, RATE_LIMITS: 'off' }, { keys })
  const passthrough = await serveWorker(join(ROOT, 'bench/passthrough-worker.js'), { UPSTREAM: emulator.url }, { limiter: false })
  const passthroughJs = await serveWorker(join(ROOT, 'bench/passthrough-js-worker.js'), { UPSTREAM: emulator.url }, { limiter: false })
  const gatewayBare = await serveWorker(bareScript, { BACKEND_URLS: emulator.url, BACKEND_API_KEY: KEY })
  const targets: Target[] = [
    { name: 'direct', url: emulator.url, key: KEY },
    { name: 'passthrough', url: passthrough.url, key: KEY },
    { name: 'passthrough-js', url: passthroughJs.url, key: KEY },
    { name: 'gateway-bare', url: gatewayBare.url, key: KEY },
    { name: 'gateway-nolimits', url: gatewayNoLimits.url, key: CLIENT_KEY },
    { name: 'gateway', url: gateway.url, key: CLIENT_KEY },
  ]
  try {
    for (const target of targets) await measureLevel(target, emulator.url, 8, 32) // warm-up, not recorded
    const levels: Record<string, Record<string, LevelResult[]>> = {}
    const throughput: Record<string, { events_per_s: number; mib_per_s: number }[]> = {}
    for (let run = 0; run < RUNS; run++) {
      for (const { concurrency, requests } of LEVELS) {
        for (const target of rotate(targets, run)) {
          checkTime()
          ;((levels[concurrency] ??= {})[target.name] ??= []).push(await measureLevel(target, emulator.url, concurrency, requests))
        }
      }
      for (const target of rotate(targets, run)) (throughput[target.name] ??= []).push(await measureThroughput(target))
      console.error(`run ${run + 1}/${RUNS} done`)
    }
    report(summarize(levels, throughput))
  } finally {
    await Promise.all([gateway.dispose(), gatewayNoLimits.dispose(), gatewayBare.dispose(), passthrough.dispose(), passthroughJs.dispose(), emulator.stop()])
  }
}

type Summary = ReturnType<typeof summarize>

function summarize(levels: Record<string, Record<string, LevelResult[]>>, throughput: Record<string, { events_per_s: number; mib_per_s: number }[]>) {
  const medianOf = <K extends string>(runs: Record<K, number>[], key: K) => round(median(runs.map((r) => r[key])))
  const byLevel = Object.entries(levels).map(([concurrency, targets]) => {
    const rows = Object.fromEntries(
      Object.entries(targets).map(([name, runs]) => [
        name,
        { ttfe_p50: medianOf(runs, 'ttfe_p50'), ttfe_p99: medianOf(runs, 'ttfe_p99'), lag_p50: medianOf(runs, 'lag_p50'), lag_p99: medianOf(runs, 'lag_p99') },
      ]),
    ) as Record<TargetName, LevelResult>
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
      },
      added_ttfe_ratio: round(added('gateway') / added('passthrough')),
      added_ttfe_ratio_vs_js: round(added('gateway') / added('passthrough-js')),
      /** What auth, validation and prompt normalization add to the p50 TTFE (issue 3: <= 0.3 ms). */
      request_checks_ttfe_p50_ms: round(rows['gateway-nolimits'].ttfe_p50 - rows['gateway-bare'].ttfe_p50),
      /** What rate-limit admission (a Durable Object call) adds to the p50 TTFE (issue 4: <= 0.5 ms). */
      admission_ttfe_p50_ms: round(rows.gateway.ttfe_p50 - rows['gateway-nolimits'].ttfe_p50),
    }
  })
  const relay = Object.fromEntries(
    Object.entries(throughput).map(([name, runs]) => [name, { events_per_s: Math.round(median(runs.map((r) => r.events_per_s))), mib_per_s: round(median(runs.map((r) => r.mib_per_s))) }]),
  )
  return { date: new Date().toISOString(), runs: RUNS, emulator: EMULATOR, levels: byLevel, throughput: relay }
}

function report(summary: Summary): void {
  const dir = join(ROOT, 'bench/results')
  writeFileSync(join(dir, 'baseline.json'), `${JSON.stringify(summary, null, 2)}\n`)
  const lines = [
    '# Baseline: streaming overhead of the gateway',
    '',
    `${summary.date}. Medians over ${summary.runs} runs, all six targets measured side by side in each run against one emulator`,
    `(TTFT ${summary.emulator.ttftMs} ms, ${summary.emulator.itlMs} ms between tokens, ${summary.emulator.reasoningTokens + summary.emulator.contentTokens} tokens).`,
    'Times in ms. TTFE: time from sending the request to the first data event. Lag: time from the emulator writing an event to the client reading it.',
    'Added TTFE: p50 TTFE minus the direct p50. Ratio: gateway added / passthrough added (target <= 1.3);',
    'ratio vs JS floor: gateway added / passthrough-js added. Auth + validation + normalization: gateway-nolimits p50 minus gateway-bare p50.',
    'Admission (rate limits): gateway p50 minus gateway-nolimits p50 (target <= 0.5 ms).',
    '',
    '| concurrency | target | TTFE p50 | TTFE p99 | lag p50 | lag p99 | added TTFE p50 |',
    '|---|---|---|---|---|---|---|',
  ]
  for (const level of summary.levels) {
    for (const name of TARGET_NAMES) {
      const row = level.targets[name]
      const added = name === 'direct' ? '' : String(level.added_ttfe_p50_ms[name])
      lines.push(`| ${level.concurrency} | ${name} | ${row.ttfe_p50} | ${row.ttfe_p99} | ${row.lag_p50} | ${row.lag_p99} | ${added} |`)
    }
    lines.push(`| ${level.concurrency} | **ratio** | | | | | **${level.added_ttfe_ratio}** |`)
    lines.push(`| ${level.concurrency} | **ratio vs JS floor** | | | | | **${level.added_ttfe_ratio_vs_js}** |`)
    lines.push(`| ${level.concurrency} | **auth + validation + normalization** | | | | | **${level.request_checks_ttfe_p50_ms}** |`)
    lines.push(`| ${level.concurrency} | **admission (rate limits)** | | | | | **${level.admission_ttfe_p50_ms}** |`)
  }
  lines.push('', `Relay throughput, one stream of ${THROUGHPUT_TOKENS} tokens with no delay between them:`, '', '| target | events/s | MiB/s |', '|---|---|---|')
  for (const [name, row] of Object.entries(summary.throughput)) lines.push(`| ${name} | ${row.events_per_s} | ${row.mib_per_s} |`)
  writeFileSync(join(dir, 'baseline.md'), `${lines.join('\n')}\n`)
  console.log(lines.join('\n'))
}

await main()
