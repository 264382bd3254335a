// npm run bench:conversation: what continuing a stored response costs a turn. One turn of a
// conversation with EARLIER_TURNS turns before it, sent two ways side by side in one run:
//   continued  previous_response_id (the stored 4th response) and the new user message: the gateway
//              reads the earlier turns from the conversation's Durable Object (RESPONSES) first,
//              and writes the new response to it before the final event
//   full       the same turn with every earlier turn sent as input items (the user messages and
//              each response's output items as the client got them), store: false
// Each pair sends both, one after the other, alternating which goes first (ABAB); rounds of pairs,
// medians per round. Two settings, served side by side and alternated per round: the production
// bundle (Durable Object round trip 0 ms, on loopback) and bench/distance-worker.ts with
// BENCH_DO_RTT_MS (30): every Durable Object call waits that long first, the rate limiter's too,
// which both variants pay alike. Then the bytes one stored turn writes: a fresh 5-turn
// conversation, its rows recomputed from what GET /v1/responses/{id} and its input_items return
// (the store writes JSON.stringify of the same objects; src/durable/response-store.ts).
// Writes bench/results/conversation.json and .md. Bounded in count and time; 127.0.0.1 only.
import { writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, serveWorker, spawnEmulator, type ServedWorker } from '../scripts/stack.ts'
import { nowMs } from './client.ts'
import { median, percentile, round } from './stats.ts'

const ROUNDS = positiveInt('BENCH_ROUNDS', 5)
const PAIRS = positiveInt('BENCH_PAIRS', 40)
const WARMUP_PAIRS = 5
/** Turns stored before the measured one. */
const EARLIER_TURNS = 4
/** Turns of the conversation whose stored bytes are measured. */
const STORAGE_TURNS = 5
const RTT_MS = Number(process.env.BENCH_DO_RTT_MS ?? 30)
if (!(RTT_MS >= 0)) throw new Error(`BENCH_DO_RTT_MS must be a number of ms >= 0, got ${process.env.BENCH_DO_RTT_MS}`)
const TIME_LIMIT_MS = 20 * 60_000
const REQUEST_TIMEOUT_MS = 30_000
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'bench-backend-key'
const CLIENT_KEY = `sk-${'c'.repeat(43)}`
const EMULATOR = { ttftMs: 20, itlMs: 2, reasoningTokens: 24, contentTokens: 16 }
/** Limits the benchmark never reaches: admission is made (a LIMITER call) and never refuses. */
const ROOMY_LIMITS = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 1_000, maxOutputTokens: null }

function positiveInt(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback)
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number >= 1, got ${process.env[name]}`)
  return value
}

const startedAt = Date.now()
function checkTime(): void {
  if (Date.now() - startedAt > TIME_LIMIT_MS) throw new Error(`benchmark exceeded ${TIME_LIMIT_MS / 60_000} minutes`)
}

type Item = { type: string; id?: string } & Record<string, unknown>
interface ResponseObject {
  id: string
  output: Item[]
  usage?: { input_tokens: number } | null
}

const userMessage = (text: string): Item => ({ type: 'message', role: 'user', content: text })
const question = (turn: number) => `Turn ${turn}: what is ${turn + 6} * ${turn + 2}? Answer briefly.`

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
}

async function getJson<T>(url: string): Promise<{ value: T; bytes: number }> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${CLIENT_KEY}` }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
  const text = await response.text()
  if (!response.ok) throw new Error(`HTTP ${response.status} from GET ${url}: ${text.slice(0, 300)}`)
  return { value: JSON.parse(text) as T, bytes: Buffer.byteLength(text) }
}

/** One stream: false turn, stored (the conversation is built this way). */
async function createStored(url: string, body: Record<string, unknown>): Promise<ResponseObject> {
  const response = await post(`${url}/v1/responses`, { model: MODEL, ...body })
  const text = await response.text()
  if (!response.ok) throw new Error(`HTTP ${response.status} from ${url}/v1/responses: ${text.slice(0, 300)}`)
  return JSON.parse(text) as ResponseObject
}

/** A stored conversation of `turns` turns, and every item of it as the client holds it (for the full variant). */
async function storedConversation(url: string, turns: number): Promise<{ last: ResponseObject; history: Item[] }> {
  const history: Item[] = []
  let last: ResponseObject | null = null
  for (let turn = 1; turn <= turns; turn++) {
    const input = [userMessage(question(turn))]
    last = await createStored(url, { input, ...(last ? { previous_response_id: last.id } : {}) })
    history.push(...input, ...last.output)
  }
  if (!last) throw new Error('no turns')
  return { last, history }
}

/** When a streamed turn's events arrived, from sending it (ms). */
interface TurnTiming {
  created: number
  /** The first response.reasoning_text.delta or response.output_text.delta: the first generated text. */
  ttfe: number
  completed: number
  inputTokens: number
}

const TEXT_EVENT = /^event: response\.(reasoning_text|output_text)\.delta\n/

async function timeTurn(url: string, body: Record<string, unknown>): Promise<TurnTiming> {
  const sentAt = nowMs()
  const response = await post(`${url}/v1/responses`, { model: MODEL, stream: true, ...body })
  if (!response.ok || !response.body)
    throw new Error(`HTTP ${response.status} from ${url}/v1/responses: ${(await response.text()).slice(0, 300)}`)
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  let created = Number.NaN
  let ttfe = Number.NaN
  let completed = Number.NaN
  let inputTokens = Number.NaN
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    const at = nowMs() - sentAt
    buffer += decoder.decode(value, { stream: true })
    let end = buffer.indexOf('\n\n')
    while (end !== -1) {
      const frame = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      if (Number.isNaN(created) && frame.startsWith('event: response.created\n')) created = at
      if (Number.isNaN(ttfe) && TEXT_EVENT.test(frame)) ttfe = at
      if (frame.startsWith('event: response.completed\n')) {
        completed = at
        const data = frame.slice(frame.indexOf('\ndata: ') + 7)
        inputTokens = (JSON.parse(data) as { response: ResponseObject }).response.usage?.input_tokens ?? Number.NaN
      }
      if (frame.startsWith('event: error\n') || frame.startsWith('event: response.failed\n'))
        throw new Error(`stream failed: ${frame.slice(0, 300)}`)
      end = buffer.indexOf('\n\n')
    }
  }
  if ([created, ttfe, completed].some(Number.isNaN))
    throw new Error(`incomplete stream from ${url}: created ${created}, ttfe ${ttfe}, completed ${completed}`)
  return { created, ttfe, completed, inputTokens }
}

interface Setting {
  name: string
  doRttMs: number
  url: string
  /** The stored response every continued turn continues, and the same turns as input items. */
  base: { id: string; history: Item[] }
}

type Variant = 'continued' | 'full'
type Pair = Record<Variant, TurnTiming>

function turnBody(setting: Setting, variant: Variant, turn: number): Record<string, unknown> {
  const next = userMessage(question(turn))
  return variant === 'continued'
    ? { previous_response_id: setting.base.id, input: [next] }
    : { input: [...setting.base.history, next], store: false }
}

async function runPair(setting: Setting, index: number): Promise<Pair> {
  const order: Variant[] = index % 2 === 0 ? ['continued', 'full'] : ['full', 'continued']
  const pair: Partial<Pair> = {}
  for (const variant of order) pair[variant] = await timeTurn(setting.url, turnBody(setting, variant, EARLIER_TURNS + 1))
  return pair as Pair
}

const FIGURES = ['ttfe', 'created', 'completed'] as const
type Figure = (typeof FIGURES)[number]

/** One round of one setting: each variant's median, and the difference of the medians. */
interface RoundResult {
  continued: Record<Figure, number>
  full: Record<Figure, number>
  difference: Record<Figure, number>
}

function roundOf(pairs: readonly Pair[]): RoundResult {
  const medians = (variant: Variant) =>
    Object.fromEntries(FIGURES.map((figure) => [figure, median(pairs.map((pair) => pair[variant][figure]))])) as Record<Figure, number>
  const continued = medians('continued')
  const full = medians('full')
  const difference = Object.fromEntries(FIGURES.map((figure) => [figure, continued[figure] - full[figure]])) as Record<Figure, number>
  return { continued, full, difference }
}

interface FigureSummary {
  continued_p50: number
  full_p50: number
  /** Median over rounds of (continued round median − full round median). */
  difference_p50: number
  /** [min, max] of the round differences. */
  difference_round_range: [number, number]
  /** Median and [p25, p75] of the per-pair differences (continued − full, the two requests of one pair). */
  pair_difference_p50: number
  pair_difference_iqr: [number, number]
  /** continued_p50 / full_p50 (medians over all pairs). */
  ratio: number
}

function summarizeSetting(pairsByRound: readonly Pair[][]) {
  const rounds = pairsByRound.map(roundOf)
  const all = pairsByRound.flat()
  const figures = Object.fromEntries(
    FIGURES.map((figure) => {
      const continued = median(all.map((pair) => pair.continued[figure]))
      const full = median(all.map((pair) => pair.full[figure]))
      const roundDifferences = rounds.map((r) => r.difference[figure])
      const pairDifferences = all.map((pair) => pair.continued[figure] - pair.full[figure])
      const summary: FigureSummary = {
        continued_p50: round(continued),
        full_p50: round(full),
        difference_p50: round(median(roundDifferences)),
        difference_round_range: [round(Math.min(...roundDifferences)), round(Math.max(...roundDifferences))],
        pair_difference_p50: round(median(pairDifferences)),
        pair_difference_iqr: [round(percentile(pairDifferences, 25)), round(percentile(pairDifferences, 75))],
        ratio: round(continued / full, 3),
      }
      return [figure, summary]
    }),
  ) as Record<Figure, FigureSummary>
  const promptTokens = (variant: Variant) => [...new Set(all.map((pair) => pair[variant].inputTokens))]
  const roundsOut = rounds.map((r) => ({
    continued: mapRound(r.continued),
    full: mapRound(r.full),
    difference: mapRound(r.difference),
  }))
  return { figures, inputTokens: { continued: promptTokens('continued'), full: promptTokens('full') }, rounds: roundsOut }
}

const mapRound = (values: Record<Figure, number>) =>
  Object.fromEntries(FIGURES.map((figure) => [figure, round(values[figure])])) as Record<Figure, number>

/** What one stored turn wrote: its response row and its new item rows, in bytes of UTF-8 as SQLite keeps TEXT. */
interface StoredTurnBytes {
  turn: number
  /** responses.body: the response object (its output items included). */
  response_object: number
  /** Of response_object, its output items: they are also rows of their own in items. */
  response_output: number
  /** responses.input_ids: the JSON list of every item id the model was given. */
  id_list: number
  id_list_length: number
  /** items.body of the rows this turn added: its user message and its output items. */
  new_items: number
  new_item_count: number
  /** The primary keys (responses.id, items.id) and expires_at (8 bytes). */
  keys: number
  total: number
}

/** A fresh conversation of STORAGE_TURNS turns and the bytes each turn's rows take, recomputed from what the API returns. */
async function measureStorage(url: string): Promise<StoredTurnBytes[]> {
  const held = new Set<string>()
  const turns: StoredTurnBytes[] = []
  let previous: string | null = null
  for (let turn = 1; turn <= STORAGE_TURNS; turn++) {
    checkTime()
    const created = await createStored(url, {
      input: [userMessage(question(turn))],
      ...(previous ? { previous_response_id: previous } : {}),
    })
    const stored = await getJson<ResponseObject>(`${url}/v1/responses/${created.id}`)
    const listed = await getJson<{ data: Item[]; has_more: boolean }>(`${url}/v1/responses/${created.id}/input_items?order=asc&limit=100`)
    if (listed.value.has_more) throw new Error('more than 100 input items: raise STORAGE_TURNS handling')
    const inputIds = listed.value.data.map((item) => item.id as string)
    const newInput = listed.value.data.filter((item) => !held.has(item.id as string))
    const newItems = [...newInput, ...stored.value.output]
    for (const item of newItems) held.add(item.id as string)
    const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value))
    const responseObject = bytes(stored.value)
    const idList = bytes(inputIds)
    const itemBytes = newItems.reduce((sum, item) => sum + bytes(item), 0)
    const keys = Buffer.byteLength(created.id) + 8 + newItems.reduce((sum, item) => sum + Buffer.byteLength(item.id as string), 0)
    turns.push({
      turn,
      response_object: responseObject,
      response_output: stored.value.output.reduce((sum, item) => sum + bytes(item), 0),
      id_list: idList,
      id_list_length: inputIds.length,
      new_items: itemBytes,
      new_item_count: newItems.length,
      keys,
      total: responseObject + idList + itemBytes + keys,
    })
    previous = created.id
  }
  return turns
}

const load = () => loadavg().map((value) => round(value))

type Summary = ReturnType<typeof summarizeSetting>

function markdown(result: {
  date: string
  load: { before: number[]; after: number[] }
  settings: { name: string; doRttMs: number; summary: Summary }[]
  storage: StoredTurnBytes[]
  durationS: number
}): string {
  const lines = [
    '# Continuing a stored response: added time to first event, and bytes stored per turn',
    '',
    `${result.date}. \`npm run bench:conversation\`, ${result.durationS} s. One turn after ${EARLIER_TURNS} earlier turns, sent two ways:`,
    '*continued* (previous_response_id of the stored 4th response, plus the new user message: the gateway reads the earlier',
    "turns from the conversation's Durable Object before preparing the request, and stores the new response before its final event)",
    'and *full* (the same turn with the earlier user messages and every output item as the client got them as input items, store: false).',
    `${ROUNDS} rounds × ${PAIRS} pairs per setting (after ${WARMUP_PAIRS} warm-up pairs), each pair one continued and one full`,
    'request one after the other, alternating which goes first; the two settings alternate by round. Emulator TTFT',
    `${EMULATOR.ttftMs} ms, ${EMULATOR.itlMs} ms between tokens, ${EMULATOR.reasoningTokens} reasoning + ${EMULATOR.contentTokens} content tokens.`,
    `Load average (1, 5, 15 min) at the start: ${result.load.before.join(', ')}; at the end: ${result.load.after.join(', ')} (2 cores, shared).`,
    '',
    'Times in ms from sending the request. TTFE: to the first event with generated text (response.reasoning_text.delta or',
    'output_text.delta); created: to response.created; completed: to response.completed (the stored turn is written before it).',
    'Difference: median over rounds of (continued round median − full round median), [min–max of the round differences];',
    'pair difference: median of continued − full within each pair, [p25–p75]. Ratio: continued p50 / full p50 (all pairs).',
    `DO round trip ${RTT_MS} ms: bench/distance-worker.ts delays every Durable Object call (the rate limiter's too, paid by both`,
    'variants alike); 0 ms: the production bundle on loopback.',
    '',
    '| DO round trip | figure | continued p50 | full p50 | difference p50 [round range] | pair difference p50 [IQR] | ratio |',
    '|---|---|---|---|---|---|---|',
  ]
  for (const setting of result.settings) {
    for (const figure of FIGURES) {
      const f = setting.summary.figures[figure]
      lines.push(
        `| ${setting.doRttMs} ms | ${figure === 'ttfe' ? '**TTFE**' : figure} | ${f.continued_p50} | ${f.full_p50} | ` +
          `${figure === 'ttfe' ? `**${f.difference_p50}**` : f.difference_p50} [${f.difference_round_range.join('–')}] | ` +
          `${f.pair_difference_p50} [${f.pair_difference_iqr.join('–')}] | ${f.ratio} |`,
      )
    }
  }
  lines.push(
    '',
    'Per round (TTFE p50, continued / full / difference):',
    '',
    '| DO round trip | ' + Array.from({ length: ROUNDS }, (_, i) => `round ${i + 1}`).join(' | ') + ' |',
  )
  lines.push(`|---|${'---|'.repeat(ROUNDS)}`)
  for (const setting of result.settings) {
    const cells = setting.summary.rounds.map((r) => `${r.continued.ttfe} / ${r.full.ttfe} / ${r.difference.ttfe}`)
    lines.push(`| ${setting.doRttMs} ms | ${cells.join(' | ')} |`)
  }
  lines.push(
    '',
    'Prompt tokens (usage.input_tokens) of the measured turn, every distinct value seen: ' +
      result.settings
        .map(
          (s) => `${s.doRttMs} ms continued ${s.summary.inputTokens.continued.join(', ')}, full ${s.summary.inputTokens.full.join(', ')}`,
        )
        .join('; ') +
      ' (equal: both variants sent the backend the same prompt).',
    '',
    `## Bytes stored per turn (a ${STORAGE_TURNS}-turn conversation)`,
    '',
    'Each turn writes one responses row (the response object as returned, the JSON list of every item id the model was given,',
    'expires_at) and one items row per new item (its user message, its output items). Recomputed from GET /v1/responses/{id}',
    "and its input_items (the store keeps JSON.stringify of the same objects); UTF-8 bytes of the row values, without SQLite's",
    "own overhead (page and record headers, the primary keys' indexes, which hold each id a second time). Output items are stored",
    'twice: inside the response object and as item rows (response output column).',
    '',
    '| turn | response object | of it, output items | id list (ids) | new items (count) | keys | total |',
    '|---|---|---|---|---|---|---|',
  )
  for (const t of result.storage) {
    lines.push(
      `| ${t.turn} | ${t.response_object} | ${t.response_output} | ${t.id_list} (${t.id_list_length}) | ${t.new_items} (${t.new_item_count}) | ${t.keys} | ${t.total} |`,
    )
  }
  const total = result.storage.reduce((sum, t) => sum + t.total, 0)
  lines.push('', `Total after ${STORAGE_TURNS} turns: ${total} bytes (${round(total / STORAGE_TURNS, 0)} per turn on average).`)
  return `${lines.join('\n')}\n`
}

async function main(): Promise<void> {
  const loadBefore = load()
  // The builds share dist/, so one after the other.
  const buildAll = async () => ({
    gateway: await buildWorker(),
    distant: await buildWorker({ script: 'bench/distance-worker.ts', outdir: 'distance' }),
  })
  const emulatorArgs = [
    '--served-model-name',
    MODEL,
    '--reasoning-parser',
    'deepseek_r1',
    '--ttft-ms',
    String(EMULATOR.ttftMs),
    '--itl-ms',
    String(EMULATOR.itlMs),
    '--reasoning-tokens',
    String(EMULATOR.reasoningTokens),
    '--content-tokens',
    String(EMULATOR.contentTokens),
  ]
  const [scripts, emulator] = await Promise.all([buildAll(), spawnEmulator(emulatorArgs, 0, { VLLM_API_KEY: BACKEND_KEY })])
  const served: ServedWorker[] = []
  try {
    const keys = [{ secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS } }]
    const backend = { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY }
    const near = await serveWorker(scripts.gateway, backend, { keys })
    served.push(near)
    const far = await serveWorker(scripts.distant, { ...backend, BENCH_DO_RTT_MS: String(RTT_MS) }, { keys })
    served.push(far)
    const settings: Setting[] = []
    for (const [name, doRttMs, url] of [
      ['gateway', 0, near.url],
      ['gateway-distant', RTT_MS, far.url],
    ] as const) {
      const { last, history } = await storedConversation(url, EARLIER_TURNS)
      settings.push({ name, doRttMs, url, base: { id: last.id, history } })
    }
    for (const setting of settings) for (let i = 0; i < WARMUP_PAIRS; i++) await runPair(setting, i)

    const pairs = new Map<string, Pair[][]>(settings.map((setting) => [setting.name, []]))
    for (let r = 0; r < ROUNDS; r++) {
      for (const setting of r % 2 === 0 ? settings : [...settings].reverse()) {
        const roundPairs: Pair[] = []
        for (let i = 0; i < PAIRS; i++) {
          checkTime()
          // Alternate which variant goes first, and start each round with the other one than the last.
          roundPairs.push(await runPair(setting, i + r))
        }
        pairs.get(setting.name)?.push(roundPairs)
        const { difference } = roundOf(roundPairs)
        console.error(`round ${r + 1}/${ROUNDS} ${setting.name} (DO ${setting.doRttMs} ms): TTFE difference ${round(difference.ttfe)} ms`)
      }
    }
    const storage = await measureStorage(near.url)
    const result = {
      date: new Date().toISOString(),
      durationS: Math.round((Date.now() - startedAt) / 1000),
      rounds: ROUNDS,
      pairs: PAIRS,
      warmupPairs: WARMUP_PAIRS,
      earlierTurns: EARLIER_TURNS,
      emulator: EMULATOR,
      load: { before: loadBefore, after: load() },
      settings: settings.map((setting) => ({
        name: setting.name,
        doRttMs: setting.doRttMs,
        summary: summarizeSetting(pairs.get(setting.name) ?? []),
      })),
      storage,
    }
    const dir = join(ROOT, 'bench/results')
    writeFileSync(join(dir, 'conversation.json'), `${JSON.stringify(result, null, 2)}\n`)
    const md = markdown(result)
    writeFileSync(join(dir, 'conversation.md'), md)
    console.log(md)
  } finally {
    await Promise.all([...served.map((worker) => worker.dispose()), emulator.stop()])
  }
}

await main()
