// npm run bench:burst: issue 29's burst. BURST_STREAMS (1,000) streams opened at once, not ramped,
// against the default fleet's shape: two emulated vLLM backends with the compose file's flags
// (max-num-seqs 256, scheduling policy priority, ttft 150 ms, itl 20 ms) behind the built Worker
// with wrangler.toml's settings (BACKEND_MAX_CONCURRENCY = max-num-seqs, FIRST_EVENT_TIMEOUT_MS
// 30 s, UPSTREAM_HEADERS_TIMEOUT_MS 3 s, the slot ledger and its edge queue on). Each backend also
// models vLLM's API server under the burst: every prompt is rendered and tokenized before its
// headers (--preprocess-ms-per-token; the render's 5% holds the server's one event loop, /health
// included), see gpu-backend/emulator/README.md, "API server: preprocessing and a lagging event loop".
//
// The cost: 0.02 ms a prompt token (~9 ms for these ~450-token prompts, 0.45 ms of it on the loop).
// vLLM's tokenizer (HF tokenizers, Rust) takes "a few hundred milliseconds" for 256K tokens
// (vllm-project/vllm#10635), ~0.001-0.002 ms a token; 0.02 also covers the per-request Python work
// on the loop the emulator does not model apart (request parsing, validation), so it errs slow but
// within vLLM's range; bench:poison's 1 ms a token models huge prompts, not a burst.
//
// Per stream it records the time to headers, to the first `:` comment, to the first data event,
// the status (and Retry-After), the x-edge-queue header and any error event (code, text); every
// 250 ms, per backend its requests, running and waiting generations and its /health round trip,
// the gateway's own /health round trip (its event loop's lag), this client's timer lag and the bytes
// it has read; and when each request left this client (undici's sendHeaders). A stream is "silent" when, BURST_DEADLINE_MS (the first-event
// deadline, 30 s) after the burst, it has none of: a data event, an error event, a refusal status.
// Nothing is left running: every stream is cut BURST_OBSERVE_MS (60 s) after the burst.
//
// Variants (environment): BURST_STREAMS, BURST_SEQS (max-num-seqs and BACKEND_MAX_CONCURRENCY),
// BURST_PREPROCESS_MS_PER_TOKEN (0.02), BURST_PROMPT_WORDS (the user message, ~1.3 tokens a word;
// 400), BURST_REASONING_TOKENS / BURST_CONTENT_TOKENS (the emulator's defaults, 24 / 16: a ~1 s
// generation at 20 ms a token, as npm start's fleet; 400 / 40 is ~9 s), BURST_API_LAG_MS (0),
// BURST_GATEWAY_URL and BURST_GATEWAY_KEY (an already running gateway, e.g. npm start, instead of
// building one here; BURST_BACKEND_URLS, comma-separated, to sample its backends), BURST_GATEWAY_VARS
// (JSON, settings over wrangler.toml's, e.g. '{"RATE_LIMITS":"off"}'). Results (every stream):
// bench/results/$BURST_RESULTS_NAME.json (burst); a summary on stdout. About 1.5 minutes.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ROOT } from '../scripts/processes.ts'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../scripts/stack.ts'

export interface BurstOptions {
  streams: number
  /** Each backend's --max-num-seqs, and the gateway's BACKEND_MAX_CONCURRENCY. */
  seqs: number
  preprocessMsPerToken: number
  promptWords: number
  reasoningTokens: number
  contentTokens: number
  apiLagMs: number
  /** The first-event deadline the outcome is judged at (ms after the burst). */
  deadlineMs: number
  /** Every stream still open this long after the burst is cut. */
  observeMs: number
  /** Gateway settings over wrangler.toml's (a test shortens deadlines with these). */
  gatewayVars?: Record<string, string>
}

export interface StreamRecord {
  status: number | null
  retryAfter: string | null
  /** The x-edge-queue header of a 200 committed while the request waited in the edge queue. */
  edgeQueue: string | null
  headersMs: number | null
  firstCommentMs: number | null
  firstDataMs: number | null
  /** The first error event's (or a refusal body's) code, and when it came. */
  errorCode: string | null
  errorMs: number | null
  /** The first error event's data (or a refusal's body), cut to 300 characters. */
  errorText: string | null
  doneMs: number | null
  /** The client could not even connect, or the stream broke: the error's name. */
  failure: string | null
}

/** What a stream had got by a given time. */
export type Outcome = 'token' | 'refused' | 'error_event' | 'committed_only' | 'silent'

export interface BackendSample {
  atMs: number
  /** How long the gateway took to answer GET /health: its own event loop's lag (null: no answer within 2 s). */
  gatewayHealthMs: number | null
  backends: { requests: number; running: number; waiting: number; streamsStarted: number }[]
  /** How late this client's own 50 ms timer ran, at most, since the last sample (its event loop's lag). */
  clientLagMs: number
  /** Response bytes this process had read from every stream so far. */
  clientBytes: number
  /** Each backend's GET /health round trip from this client (vLLM's API server loop), ms; null: over 2 s. */
  backendHealthMs: (number | null)[]
}

export interface BurstResult {
  options: BurstOptions
  records: StreamRecord[]
  samples: BackendSample[]
  /** Outcome counts at the deadline and at the end of observation. */
  atDeadline: Record<Outcome, number>
  atEnd: Record<Outcome, number>
  /** Error codes (events and refusal bodies) and refusal statuses, counted. */
  codes: Record<string, number>
  /** Percentiles of time to first data event among the streams that got one (ms). */
  firstData: { p50: number; p99: number; max: number } | null
  /** When this client's HTTP layer sent each request's headers (ms after the burst, sorted): the burst as it left. */
  sentMs: number[]
  /** The latest a stream got its first event of any kind that is not a comment (token, error, refusal). */
  latestAnswerMs: number | null
}

export const BACKEND_KEY = 'burst-bench-backend-key'
export const CLIENT_KEY = `sk-${'u'.repeat(43)}`

/** The compose file's emulator flags (gpu-backend/compose.yaml), with the burst's size and cost. */
export function emulatorArgs(options: BurstOptions): string[] {
  return [
    '--served-model-name',
    'deepseek-r1-distill-qwen-1.5b',
    '--max-model-len',
    '4096',
    '--max-num-seqs',
    String(options.seqs),
    '--reasoning-parser',
    'deepseek_r1',
    '--scheduling-policy',
    'priority',
    '--ttft-ms',
    '150',
    '--itl-ms',
    '20',
    '--api-key',
    BACKEND_KEY,
    '--reasoning-tokens',
    String(options.reasoningTokens),
    '--content-tokens',
    String(options.contentTokens),
    '--preprocess-ms-per-token',
    String(options.preprocessMsPerToken),
    '--api-server-lag-ms',
    String(options.apiLagMs),
  ]
}

/** One user message of about `words` words, different per stream (no shared prefix). */
function prompt(index: number, words: number): string {
  const vocabulary = ['river', 'stone', 'market', 'signal', 'garden', 'ledger', 'harbor', 'lantern', 'orbit', 'meadow']
  const parts = [`Question ${index}: summarize the following notes.`]
  for (let i = 0; i < words; i++) parts.push(vocabulary[(index * 7 + i * 3) % vocabulary.length] as string)
  return parts.join(' ')
}

export interface Fleet {
  gateway: ServedWorker
  backends: RunningEmulator[]
  stop(): Promise<void>
}

/** Two emulated backends and the built Worker in front of them, as the default fleet. */
export async function startFleet(options: BurstOptions): Promise<Fleet> {
  const backends: RunningEmulator[] = []
  for (let i = 0; i < 2; i++) backends.push(await spawnEmulator(emulatorArgs(options)))
  try {
    const script = await buildPrivateWorker()
    const gateway = await serveWorker(
      script,
      {
        BACKEND_URLS: backends.map((backend) => backend.url).join(','),
        BACKEND_API_KEY: BACKEND_KEY,
        BACKEND_MAX_CONCURRENCY: String(options.seqs),
        ...options.gatewayVars,
      },
      {
        keys: [
          {
            secret: CLIENT_KEY,
            fields: {
              limits: { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 100_000, maxOutputTokens: null },
            },
          },
        ],
      },
    )
    return {
      gateway,
      backends,
      stop: async () => {
        await gateway.dispose()
        await Promise.all(backends.map((backend) => backend.stop()))
      },
    }
  } catch (error) {
    await Promise.all(backends.map((backend) => backend.stop()))
    throw error
  }
}

/** Response bytes read from every stream of this process so far. */
let received = 0
const bytesRead = () => received

/** Reads one stream to its end (or its cut), noting when each kind of thing first came. */
async function openStream(
  url: string,
  key: string,
  index: number,
  options: BurstOptions,
  t0: number,
  cut: AbortSignal,
): Promise<StreamRecord> {
  const record: StreamRecord = {
    status: null,
    retryAfter: null,
    edgeQueue: null,
    headersMs: null,
    firstCommentMs: null,
    firstDataMs: null,
    errorCode: null,
    errorMs: null,
    errorText: null,
    doneMs: null,
    failure: null,
  }
  const since = () => Math.round(performance.now() - t0)
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({
        model: 'deepseek-r1-distill-qwen-1.5b',
        stream: true,
        messages: [{ role: 'user', content: prompt(index, options.promptWords) }],
      }),
      signal: cut,
    })
    record.status = response.status
    record.headersMs = since()
    record.retryAfter = response.headers.get('retry-after')
    record.edgeQueue = response.headers.get('x-edge-queue')
    if (response.status !== 200) {
      const text = await response.text()
      record.errorCode = /"code"\s*:\s*"?([^",}]+)/.exec(text)?.[1] ?? `http_${response.status}`
      record.errorMs = since()
      record.errorText = text.slice(0, 300)
      return record
    }
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    const decoder = new TextDecoder()
    let buffer = ''
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      received += value.byteLength
      buffer += decoder.decode(value, { stream: true })
      let end = buffer.indexOf('\n')
      while (end !== -1) {
        const line = buffer.slice(0, end)
        buffer = buffer.slice(end + 1)
        if (line.startsWith(':')) record.firstCommentMs ??= since()
        else if (line === 'data: [DONE]') record.doneMs ??= since()
        else if (line.startsWith('data: ')) {
          if (line.startsWith('data: {"error"')) {
            record.errorCode ??= /"code"\s*:\s*"?([^",}]+)/.exec(line)?.[1] ?? 'error_event'
            record.errorMs ??= since()
            record.errorText ??= line.slice(0, 300)
          } else record.firstDataMs ??= since()
        }
        end = buffer.indexOf('\n')
      }
    }
  } catch (error) {
    record.failure = cut.aborted ? 'cut' : error instanceof Error ? `${error.name}: ${error.message}` : 'unknown'
  }
  return record
}

/** What the stream had got by `atMs` after the burst. */
export function outcomeAt(record: StreamRecord, atMs: number): Outcome {
  const by = (ms: number | null) => ms !== null && ms <= atMs
  if (by(record.firstDataMs)) return 'token'
  if (record.status !== null && record.status !== 200 && by(record.headersMs)) return 'refused'
  if (by(record.errorMs)) return 'error_event'
  if (record.status === 200 && by(record.headersMs)) return 'committed_only'
  return 'silent'
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number
}

function counts(records: StreamRecord[], atMs: number): Record<Outcome, number> {
  const result: Record<Outcome, number> = { token: 0, refused: 0, error_event: 0, committed_only: 0, silent: 0 }
  for (const record of records) result[outcomeAt(record, atMs)]++
  return result
}

/** Opens every stream at once against `url` and follows them; `backends` are sampled meanwhile. */
/** A GET /health round trip, in ms; null when it took over 2 s. */
async function healthMs(url: string, headers: Record<string, string> = {}): Promise<number | null> {
  const started = performance.now()
  try {
    const response = await fetch(`${url}/health`, { headers, signal: AbortSignal.timeout(2_000) })
    await response.arrayBuffer()
    return Math.round(performance.now() - started)
  } catch {
    return null
  }
}

export async function burst(url: string, key: string, backends: string[], options: BurstOptions): Promise<BurstResult> {
  const samples: BackendSample[] = []
  const cut = new AbortController()
  const t0 = performance.now()
  const cutTimer = setTimeout(() => cut.abort(), options.observeMs)
  let sampling = true
  let clientLagMs = 0
  let tickDue = performance.now() + 50
  const ticker = setInterval(() => {
    const now = performance.now()
    clientLagMs = Math.max(clientLagMs, now - tickDue)
    tickDue = now + 50
  }, 50)
  const sampler = (async () => {
    while (sampling) {
      const atMs = Math.round(performance.now() - t0)
      const health = healthMs(url)
      const backendHealth = Promise.all(backends.map((backend) => healthMs(backend, { authorization: `Bearer ${BACKEND_KEY}` })))
      try {
        const stats = await Promise.all(
          backends.map(
            async (backend) =>
              (await (
                await fetch(`${backend}/emulator/stats`, { signal: AbortSignal.timeout(2_000) })
              ).json()) as BackendSample['backends'][number],
          ),
        )
        samples.push({
          atMs,
          clientLagMs: Math.round(clientLagMs),
          clientBytes: bytesRead(),
          gatewayHealthMs: await health,
          backendHealthMs: await backendHealth,
          backends: stats.map(({ requests, running, waiting, streamsStarted }) => ({ requests, running, waiting, streamsStarted })),
        })
      } catch {
        // A sample missed (the machine is busy): the next one will do.
      }
      clientLagMs = 0
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  })()
  const sentMs: number[] = []
  const onSend = (message: unknown) => {
    if ((message as { request?: { path?: string } }).request?.path === '/v1/chat/completions')
      sentMs.push(Math.round(performance.now() - t0))
  }
  subscribe('undici:client:sendHeaders', onSend)
  const records = await Promise.all(
    Array.from({ length: options.streams }, (_, index) => openStream(url, key, index, options, t0, cut.signal)),
  )
  clearTimeout(cutTimer)
  clearInterval(ticker)
  unsubscribe('undici:client:sendHeaders', onSend)
  sampling = false
  await sampler
  const codes: Record<string, number> = {}
  for (const record of records) {
    const code = record.errorCode ?? record.failure
    if (code !== null) codes[code] = (codes[code] ?? 0) + 1
  }
  const firstData = records.flatMap((record) => (record.firstDataMs === null ? [] : [record.firstDataMs])).sort((a, b) => a - b)
  const answers = records.flatMap((record) => {
    const times = [record.firstDataMs, record.errorMs, record.status !== 200 ? record.headersMs : null].filter((ms) => ms !== null)
    return times.length === 0 ? [] : [Math.min(...times)]
  })
  return {
    options,
    records,
    samples,
    atDeadline: counts(records, options.deadlineMs),
    atEnd: counts(records, options.observeMs),
    codes,
    sentMs: sentMs.sort((a, b) => a - b),
    firstData:
      firstData.length === 0 ? null : { p50: percentile(firstData, 50), p99: percentile(firstData, 99), max: firstData.at(-1) as number },
    latestAnswerMs: answers.length === 0 ? null : Math.max(...answers),
  }
}

function optionsFromEnv(): BurstOptions {
  const number = (name: string, fallback: number) => Number(process.env[name] ?? fallback)
  return {
    streams: number('BURST_STREAMS', 1_000),
    seqs: number('BURST_SEQS', 256),
    preprocessMsPerToken: number('BURST_PREPROCESS_MS_PER_TOKEN', 0.02),
    promptWords: number('BURST_PROMPT_WORDS', 400),
    reasoningTokens: number('BURST_REASONING_TOKENS', 24),
    contentTokens: number('BURST_CONTENT_TOKENS', 16),
    apiLagMs: number('BURST_API_LAG_MS', 0),
    deadlineMs: number('BURST_DEADLINE_MS', 30_000),
    observeMs: number('BURST_OBSERVE_MS', 60_000),
    gatewayVars: JSON.parse(process.env.BURST_GATEWAY_VARS ?? '{}') as Record<string, string>,
  }
}

async function main(): Promise<void> {
  const options = optionsFromEnv()
  const external = process.env.BURST_GATEWAY_URL
  const fleet = external ? null : await startFleet(options)
  try {
    const url = external ?? (fleet as Fleet).gateway.url
    const key = process.env.BURST_GATEWAY_KEY ?? CLIENT_KEY
    const backends = fleet
      ? fleet.backends.map((backend) => backend.url)
      : (process.env.BURST_BACKEND_URLS ?? '').split(',').filter(Boolean)
    const result = await burst(url, key, backends, options)
    const name = process.env.BURST_RESULTS_NAME ?? 'burst'
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
    writeFileSync(join(ROOT, `bench/results/${name}.json`), `${JSON.stringify(result, null, 1)}\n`)
    const peak = (field: 'running' | 'waiting') =>
      result.samples.reduce((max, sample) => Math.max(max, ...sample.backends.map((backend) => backend[field])), 0)
    console.log(
      JSON.stringify(
        {
          options,
          atDeadline: result.atDeadline,
          atEnd: result.atEnd,
          codes: result.codes,
          firstData: result.firstData,
          latestAnswerMs: result.latestAnswerMs,
          peakRunning: peak('running'),
          peakWaiting: peak('waiting'),
          perBackendRequests: result.samples.at(-1)?.backends.map((backend) => backend.requests),
        },
        null,
        1,
      ),
    )
  } finally {
    await fleet?.stop()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // Bounded: the burst cuts its streams at BURST_OBSERVE_MS; this stops a start or a stop that hangs.
  const limit = setTimeout(() => {
    console.error('bench:burst exceeded its time limit')
    process.exit(1)
  }, 5 * 60_000)
  limit.unref()
  await main()
  process.exit(0)
}
