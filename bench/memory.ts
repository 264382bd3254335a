// npm run bench's memory part (issue 32): memory per open stream, side by side in one run, for
//   passthrough     the trivial pass-through Worker (workerd pipes the body natively)
//   passthrough-js  the identity JS TransformStream Worker (the floor for any Worker that reads chunks)
//   gateway         this Worker with its default settings (rate limits, speculative admission, the
//                   slot ledger, hedging, telemetry), one backend that takes every stream
// Each target, in each round, is a fresh workerd process (one Miniflare instance) with its V8
// inspector open on 127.0.0.1. After a warm-up its heap (after forced full GCs) and its resident
// memory are read with no stream open, then again with 500, 1,000, 2,000 and 3,000 streams held
// open (BENCH_MEMORY_STEPS): every stream is a chat completion whose upstream (the emulator) sends
// one event every 5 s, read by the client as it comes. Per open stream: (reading at N - reading at
// 0) / N. Rounds are interleaved between targets (the order rotates each round) and a fresh process
// per round keeps one round's freed-but-kept allocator pages out of the next round's baseline.
// Bounded in count (the steps, at most MAX_STREAMS streams) and time (per step and for the part).
import { loadavg } from 'node:os'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT, freePort } from '../scripts/processes.ts'
import { serveWorker, type ServeOptions, type ServedWorker } from '../scripts/stack.ts'
import { childPids, withNewChild } from './cpu.ts'
import {
  connectIsolate,
  heapAfterGc,
  openFilesLimit,
  rssBytes,
  withExposedGc,
  type HeapUsage,
  type InspectorSession,
} from './memory-inspector.ts'
import { median, round } from './stats.ts'

// With BENCH_MEMORY_VARIANTS (a comma list; bench/run.ts), also the gateway with a setting off, to
// tell what its parts hold: gateway-nolimits (RATE_LIMITS=off), gateway-noledger (SLOT_LEDGERS=off),
// gateway-bare (bench/bare-worker.ts: no auth, validation, admission or telemetry).
export const MEMORY_TARGETS = ['passthrough', 'passthrough-js', 'gateway', 'gateway-nolimits', 'gateway-noledger', 'gateway-bare'] as const
/** One of MEMORY_TARGETS, or a Worker of bench/memory-variants/ (bench/memory-variants.ts), reported after them. */
export type MemoryTargetName = (typeof MEMORY_TARGETS)[number] | `variant-${string}`

/** A Worker isolate's memory limit on Cloudflare (128 MB, taken here as 128 MiB). */
export const ISOLATE_LIMIT_BYTES = 128 * 1024 * 1024
/** The step every per-stream figure is quoted at (issue 32: 1,000 streams held open). */
export const HEADLINE_STREAMS = 1_000
/** Never more streams than this in one process, whatever BENCH_MEMORY_STEPS asks. */
const MAX_STREAMS = 9_000
/** Seconds between two events of a held stream (the emulator's inter-token latency). */
const EVENT_INTERVAL_MS = 5_000
/** Streams being opened at once (waiting for their first event). */
const OPEN_CONCURRENCY = 50
/** After the last stream of a step got its first event: the work after it (admission settling) ends. */
const SETTLE_MS = 1_500
/** The longest a step may take to open its streams: 30 s plus 40 ms per new stream. */
const stepDeadlineMs = (added: number) => 30_000 + 40 * added
const PART_TIME_LIMIT_MS = 45 * 60_000
/** While holding the last step (BENCH_MEMORY_HOLD_MS), a reading this often. */
const HOLD_READING_MS = 15_000
const WARMUP_SHORT = 20
/**
 * How long a target's workerd may take to start (it takes 1-3 s here). Once, a gateway round's
 * Miniflare never became ready: its workerd listened, idle, for 12 minutes, and the run with it.
 */
const START_TIMEOUT_MS = 60_000
const WARMUP_HELD = 8

export interface MemoryTarget {
  name: MemoryTargetName
  script: string
  vars: Record<string, string>
  options: ServeOptions
  /** The Authorization the target expects. */
  key: string
}

interface Reading {
  /** Streams open and alive when read. */
  streams: number
  heap: HeapUsage
  rss: number
  /** Data events the client has read over all held streams so far. */
  events: number
}

export interface RoundResult {
  target: MemoryTargetName
  round: number
  load: number[]
  baseline: Reading
  steps: Reading[]
  /** Streams that ended or failed before the round ended them (none expected). */
  lost: number
  /** Seconds the round took, from starting the process to its disposal. */
  seconds: number
  /** With a hold (BENCH_MEMORY_HOLD_MS): the last step read again after that long, and every HOLD_READING_MS on the way. */
  held?: { seconds: number; reading: Reading; series?: { seconds: number; reading: Reading }[] }
  /** The step where opening stopped early (time bound or failures), if any. */
  stoppedAt?: { step: number; reason: string }
}

export interface MemorySettings {
  model: string
  /** After the last step, how long the streams are held before one more reading (0: none). */
  holdMs: number
  /** The user message's length in characters (the question padded with filler); 0: the bare question (106 characters). */
  promptChars: number
  upstream: { url: string }
  rounds: number
  steps: number[]
}

/** One held stream: counts its events until aborted. */
interface Held {
  events: number
  ended: boolean
  error?: string
  abort: () => void
}

/** Words that pad the prompt to BENCH_MEMORY_PROMPT_CHARS: a real prompt is far longer than the benchmark's question. */
const FILLER = 'The quick brown fox jumps over the lazy dog near the river bank. '

function openStream(url: string, key: string, model: string, promptChars: number): Promise<Held> {
  const controller = new AbortController()
  const question = `[emulator ttft_ms=20 itl_ms=${EVENT_INTERVAL_MS} reasoning_tokens=2000 content_tokens=16] Memory benchmark: what is 7 * 6?`
  const padding = Math.max(0, promptChars - question.length)
  const prompt = padding === 0 ? question : `${FILLER.repeat(Math.ceil(padding / FILLER.length)).slice(0, padding)}\n${question}`
  const held: Held = { events: 0, ended: false, abort: () => controller.abort() }
  return new Promise<Held>((resolve, reject) => {
    let first = true
    const run = async () => {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ model, stream: true, max_tokens: 3_000, messages: [{ role: 'user', content: prompt }] }),
        signal: controller.signal,
      })
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${(await response.text()).slice(0, 200)}`)
      const reader = response.body.getReader()
      const decoder = new TextDecoder()
      let buffer = ''
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        buffer += decoder.decode(value, { stream: true })
        let end = buffer.indexOf('\n\n')
        while (end !== -1) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          if (frame.startsWith('data: ') && frame !== 'data: [DONE]') {
            held.events++
            if (first) {
              first = false
              resolve(held)
            }
          }
          end = buffer.indexOf('\n\n')
        }
      }
    }
    run()
      .catch((error: unknown) => {
        if (!controller.signal.aborted) held.error = error instanceof Error ? error.message : String(error)
      })
      .finally(() => {
        held.ended = true
        if (first) reject(new Error(held.error ?? 'the stream ended before its first event'))
      })
  })
}

/** Opens streams until `held` has `count`, at most OPEN_CONCURRENCY at a time, within `deadline`. */
async function openUpTo(held: Held[], count: number, deadline: number, open: () => Promise<Held>): Promise<string | undefined> {
  let failures = 0
  let pending = 0
  let reason: string | undefined
  const worker = async () => {
    while (held.length + pending < count && reason === undefined) {
      if (Date.now() > deadline) {
        reason = 'time bound'
        return
      }
      pending++
      try {
        held.push(await open())
      } catch (error) {
        if (++failures >= 20) reason = `20 streams failed to open (last: ${error instanceof Error ? error.message : String(error)})`
      } finally {
        pending--
      }
    }
  }
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, worker))
  return reason
}

async function waitForIdleUpstream(upstreamUrl: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const stats = (await (await fetch(`${upstreamUrl}/emulator/stats`)).json()) as { inFlight: number }
    if (stats.inFlight === 0) return
    await sleep(250)
  }
  console.error(`memory: the emulator still had streams in flight ${timeoutMs / 1000} s after a round`)
}

const load = () => loadavg().map((value) => round(value))

async function read(session: InspectorSession, pid: number, held: Held[]): Promise<Reading> {
  const heap = await heapAfterGc(session)
  return {
    streams: held.filter((stream) => !stream.ended).length,
    heap,
    rss: rssBytes(pid),
    events: held.reduce((sum, stream) => sum + stream.events, 0),
  }
}

/** Serves the target in a new workerd with gc() exposed; a start that hangs is killed and tried once more. */
async function startTarget(target: MemoryTarget, inspectorPort: number): ReturnType<typeof withNewChild<ServedWorker>> {
  for (let attempt = 1; ; attempt++) {
    const before = new Set(childPids(process.pid, 'workerd'))
    const start = withNewChild('workerd', () =>
      withExposedGc(() => serveWorker(target.script, target.vars, { ...target.options, inspectorPort })),
    )
    // A start given up on may still fail later, when its workerd is killed: nobody awaits it then.
    start.catch(() => {})
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${target.name}: workerd not ready within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS)
    })
    try {
      return await Promise.race([start, timeout])
    } catch (error) {
      for (const pid of childPids(process.pid, 'workerd')) if (!before.has(pid)) process.kill(pid, 'SIGKILL')
      if (attempt >= 2) throw error
      console.error(`memory: ${error instanceof Error ? error.message : String(error)}; starting it again`)
    } finally {
      clearTimeout(timer)
    }
  }
}

async function measureRound(target: MemoryTarget, settings: MemorySettings, round: number, partDeadline: number): Promise<RoundResult> {
  const started = Date.now()
  const loadAtStart = load()
  const inspectorPort = await freePort()
  const { value: served, pid } = await startTarget(target, inspectorPort)
  const held: Held[] = []
  let session: InspectorSession | undefined
  try {
    const open = () => openStream(served.url, target.key, settings.model, settings.promptChars)
    // Warm-up: compiled code, caches and the abort path, as a busy isolate has them.
    for (let i = 0; i < WARMUP_SHORT; i++) {
      const response = await fetch(`${served.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${target.key}` },
        body: JSON.stringify({ model: settings.model, stream: true, messages: [{ role: 'user', content: 'Warm-up: what is 7 * 6?' }] }),
      })
      await response.text()
    }
    const warm = await Promise.all(Array.from({ length: WARMUP_HELD }, open))
    for (const stream of warm) stream.abort()
    await sleep(EVENT_INTERVAL_MS + 1_000) // the aborted streams' next write finds their client gone
    session = await connectIsolate(inspectorPort)
    const baseline = await read(session, pid, held)
    const steps: Reading[] = []
    let stoppedAt: RoundResult['stoppedAt']
    for (const step of settings.steps) {
      const added = step - held.length
      const deadline = Math.min(Date.now() + stepDeadlineMs(added), partDeadline)
      let reason = await openUpTo(held, step, deadline, open)
      await sleep(SETTLE_MS)
      try {
        steps.push(await read(session, pid, held))
      } catch (error) {
        // Past what the machine allows (open files, most often) workerd may stop answering its inspector.
        reason = `no reading (${error instanceof Error ? error.message : String(error)})`
      }
      if (reason !== undefined) {
        stoppedAt = { step, reason }
        break
      }
    }
    let heldReading: RoundResult['held']
    if (settings.holdMs > 0 && !stoppedAt) {
      // A reading every HOLD_READING_MS, so that growth over time at a constant number of streams shows.
      const series: { seconds: number; reading: Reading }[] = []
      for (let at = HOLD_READING_MS; at <= settings.holdMs; at += HOLD_READING_MS) {
        await sleep(HOLD_READING_MS)
        series.push({ seconds: at / 1000, reading: await read(session, pid, held) })
      }
      const last = series.at(-1)
      if (last) heldReading = { ...last, series }
    }
    const lost = held.filter((stream) => stream.ended).length
    return {
      target: target.name,
      round,
      load: loadAtStart,
      baseline,
      steps,
      lost,
      seconds: 0,
      ...(heldReading ? { held: heldReading } : {}),
      ...(stoppedAt ? { stoppedAt } : {}),
    }
  } finally {
    for (const stream of held) stream.abort()
    session?.close()
    await served.dispose()
    await waitForIdleUpstream(settings.upstream.url)
    console.error(
      `memory: ${target.name} round ${round + 1} took ${Math.round((Date.now() - started) / 1000)} s (load ${load().join(', ')})`,
    )
  }
}

/** The steps to take: sorted, within the open-files limit (each stream holds two sockets in workerd). */
export function memorySteps(requested: string | undefined): number[] {
  const steps = (requested ?? '500,1000,2000,3000')
    .split(',')
    .map(Number)
    .filter((step) => Number.isInteger(step) && step > 0)
    .sort((a, b) => a - b)
  if (!steps.includes(HEADLINE_STREAMS)) throw new Error(`BENCH_MEMORY_STEPS must include ${HEADLINE_STREAMS}`)
  // workerd holds the client's socket and the upstream's for each stream, and dup()s them: 6,000
  // and 8,000 streams under a limit of 20,000 open files failed with EMFILE in workerd.
  const room = Math.floor((openFilesLimit() - 500) / 4)
  const allowed = steps.filter((step) => step <= Math.min(MAX_STREAMS, room))
  if (allowed.length < steps.length)
    console.error(
      `memory: steps over ${Math.min(MAX_STREAMS, room)} streams skipped (open files limit ${openFilesLimit()}, at most ${MAX_STREAMS})`,
    )
  return allowed
}

/** Runs every round of every target, interleaved, and writes bench/results/<name>.json and .md. */
export async function measureMemory(targets: MemoryTarget[], settings: MemorySettings, outName: string): Promise<MemorySummary> {
  const started = Date.now()
  const partDeadline = started + PART_TIME_LIMIT_MS
  const results: RoundResult[] = []
  for (let round = 0; round < settings.rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(i + round) % targets.length] as MemoryTarget
      if (Date.now() > partDeadline) throw new Error(`the memory part exceeded ${PART_TIME_LIMIT_MS / 60_000} minutes`)
      const roundStarted = Date.now()
      const result = await measureRound(target, settings, round, partDeadline)
      result.seconds = round1((Date.now() - roundStarted) / 1000)
      results.push(result)
    }
  }
  return writeMemory(results, settings, (Date.now() - started) / 1000, outName)
}

function writeMemory(results: RoundResult[], settings: MemorySettings, seconds: number, outName: string, date?: string): MemorySummary {
  const summary = { ...summarizeMemory(results, settings, seconds), ...(date ? { date } : {}) }
  writeFileSync(join(ROOT, 'bench/results', `${outName}.json`), `${JSON.stringify({ ...summary, rounds: results }, null, 2)}\n`)
  const lines = memoryReport(summary)
  writeFileSync(join(ROOT, 'bench/results', `${outName}.md`), `${lines.join('\n')}\n`)
  console.log(lines.join('\n'))
  return summary
}

/** Writes the report of a run again from its .json (its rounds and settings), without running. */
export function reportMemoryFrom(path: string, outName: string): MemorySummary {
  const saved = JSON.parse(readFileSync(path, 'utf8')) as MemorySummary & { rounds: RoundResult[] }
  const { model, upstream, rounds, steps } = saved.settings
  const settings: MemorySettings = {
    model,
    upstream,
    rounds,
    steps,
    holdMs: saved.settings.holdMs ?? 0,
    promptChars: saved.settings.promptChars ?? 0,
  }
  return writeMemory(saved.rounds, settings, saved.seconds, outName, saved.date)
}

const round1 = (value: number) => round(value, 1)
const kB = (bytes: number) => bytes / 1000
const MB = (bytes: number) => bytes / 1e6

interface Figure {
  median: number
  min: number
  max: number
}

function figure(values: number[], digits = 1): Figure {
  const finite = values.filter(Number.isFinite)
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN }
  return { median: round(median(finite), digits), min: round(Math.min(...finite), digits), max: round(Math.max(...finite), digits) }
}

export interface TargetMemory {
  rounds: number
  baselineHeapMB: Figure
  baselineRssMB: Figure
  /** At HEADLINE_STREAMS streams: (reading - baseline) / streams, in kB (1 kB = 1000 bytes). */
  heapPerStreamKB: Figure
  rssPerStreamKB: Figure
  /** Runtime.getHeapUsage's embedderHeapUsedSize + backingStorageSize (ArrayBuffer contents), per stream, in kB. */
  outsideHeapPerStreamKB: Figure
  /** Runtime.getHeapUsage totalSize (the heap V8 has committed, live or not) per stream, in kB. */
  committedPerStreamKB: Figure
  /** After holding the last step's streams BENCH_MEMORY_HOLD_MS longer: RSS and committed heap per stream, in kB (null: no hold). */
  held: { seconds: number; rssPerStreamKB: Figure; heapPerStreamKB: Figure; committedPerStreamKB: Figure } | null
  /** (ISOLATE_LIMIT_BYTES - baseline heap) / heap per stream at HEADLINE_STREAMS, per round. */
  streamsPer128MiB: Figure
  /** Per step: the heap and RSS read, and the per-stream deltas from the baseline. */
  curve: {
    streams: number
    rounds: number
    heapMB: Figure
    committedMB: Figure
    rssMB: Figure
    heapPerStreamKB: Figure
    rssPerStreamKB: Figure
  }[]
  /** The same with the committed heap plus embedder heap and ArrayBuffer contents (what the isolate takes, live or not). */
  streamsPer128MiBCommitted: Figure
  /** Streams at which the heap measured crossed 128 MiB (interpolated between steps), per round that got there. */
  measuredCrossing: Figure | null
  lost: number
  stopped: string[]
  roundSeconds: Figure
}

export interface MemorySummary {
  date: string
  settings: MemorySettings & { eventIntervalMs: number; limitBytes: number; openFilesLimit: number }
  seconds: number
  load: number[][]
  targets: Partial<Record<MemoryTargetName, TargetMemory>>
}

function heldFigures(
  rounds: RoundResult[],
  perStream: (result: RoundResult, step: Reading, field: 'heap' | 'rss' | 'committed') => number,
): TargetMemory['held'] {
  const heldRounds = rounds.flatMap((result) => (result.held ? [{ result, step: result.held.reading, seconds: result.held.seconds }] : []))
  if (heldRounds.length === 0) return null
  return {
    seconds: heldRounds[0]?.seconds ?? 0,
    rssPerStreamKB: figure(heldRounds.map(({ result, step }) => kB(perStream(result, step, 'rss')))),
    heapPerStreamKB: figure(heldRounds.map(({ result, step }) => kB(perStream(result, step, 'heap')))),
    committedPerStreamKB: figure(heldRounds.map(({ result, step }) => kB(perStream(result, step, 'committed')))),
  }
}

function crossing(baseline: Reading, steps: Reading[]): number | null {
  let previous = { streams: 0, used: baseline.heap.usedSize }
  for (const step of steps) {
    if (step.heap.usedSize >= ISOLATE_LIMIT_BYTES) {
      const slope = (step.heap.usedSize - previous.used) / (step.streams - previous.streams)
      return previous.streams + (ISOLATE_LIMIT_BYTES - previous.used) / slope
    }
    previous = { streams: step.streams, used: step.heap.usedSize }
  }
  return null
}

export function summarizeMemory(results: RoundResult[], settings: MemorySettings, seconds: number): MemorySummary {
  const targets: Partial<Record<MemoryTargetName, TargetMemory>> = {}
  const variants = [...new Set(results.map((result) => result.target))].filter((name) => name.startsWith('variant-'))
  for (const name of [...MEMORY_TARGETS, ...variants]) {
    const rounds = results.filter((result) => result.target === name)
    if (rounds.length === 0) continue
    const outside = (heap: HeapUsage) => (heap.embedderHeapUsedSize ?? 0) + (heap.backingStorageSize ?? 0)
    const perStream = (result: RoundResult, step: Reading, field: 'heap' | 'rss' | 'outside' | 'committed') => {
      if (field === 'heap') return (step.heap.usedSize - result.baseline.heap.usedSize) / step.streams
      if (field === 'committed') return (step.heap.totalSize - result.baseline.heap.totalSize) / step.streams
      if (field === 'outside') return (outside(step.heap) - outside(result.baseline.heap)) / step.streams
      return (step.rss - result.baseline.rss) / step.streams
    }
    const atHeadline = rounds.flatMap((result) => {
      const step = result.steps.find((reading, i) => settings.steps[i] === HEADLINE_STREAMS)
      return step ? [{ result, step }] : []
    })
    const curve = settings.steps.map((streams, i) => {
      const at = rounds.flatMap((result) => (result.steps[i] ? [{ result, step: result.steps[i] }] : []))
      return {
        streams,
        rounds: at.length,
        heapMB: figure(at.map(({ step }) => MB(step.heap.usedSize))),
        committedMB: figure(at.map(({ step }) => MB(step.heap.totalSize))),
        rssMB: figure(at.map(({ step }) => MB(step.rss))),
        heapPerStreamKB: figure(at.map(({ result, step }) => kB(perStream(result, step, 'heap')))),
        rssPerStreamKB: figure(at.map(({ result, step }) => kB(perStream(result, step, 'rss')))),
      }
    })
    const crossings = rounds.map((result) => crossing(result.baseline, result.steps)).filter((value): value is number => value !== null)
    targets[name] = {
      rounds: rounds.length,
      baselineHeapMB: figure(rounds.map((result) => MB(result.baseline.heap.usedSize))),
      baselineRssMB: figure(rounds.map((result) => MB(result.baseline.rss))),
      heapPerStreamKB: figure(atHeadline.map(({ result, step }) => kB(perStream(result, step, 'heap')))),
      rssPerStreamKB: figure(atHeadline.map(({ result, step }) => kB(perStream(result, step, 'rss')))),
      outsideHeapPerStreamKB: figure(atHeadline.map(({ result, step }) => kB(perStream(result, step, 'outside')))),
      committedPerStreamKB: figure(atHeadline.map(({ result, step }) => kB(perStream(result, step, 'committed')))),
      held: heldFigures(rounds, perStream),
      streamsPer128MiB: figure(
        atHeadline.map(({ result, step }) => (ISOLATE_LIMIT_BYTES - result.baseline.heap.usedSize) / perStream(result, step, 'heap')),
        0,
      ),
      streamsPer128MiBCommitted: figure(
        atHeadline.map(
          ({ result, step }) =>
            (ISOLATE_LIMIT_BYTES - result.baseline.heap.totalSize - outside(result.baseline.heap)) /
            (perStream(result, step, 'committed') + perStream(result, step, 'outside')),
        ),
        0,
      ),
      curve,
      measuredCrossing: crossings.length > 0 ? figure(crossings, 0) : null,
      lost: rounds.reduce((sum, result) => sum + result.lost, 0),
      stopped: rounds.flatMap((result) =>
        result.stoppedAt ? [`round ${result.round + 1}: ${result.stoppedAt.reason} at ${result.stoppedAt.step}`] : [],
      ),
      roundSeconds: figure(
        rounds.map((result) => result.seconds),
        0,
      ),
    }
  }
  return {
    date: new Date().toISOString(),
    settings: { ...settings, eventIntervalMs: EVENT_INTERVAL_MS, limitBytes: ISOLATE_LIMIT_BYTES, openFilesLimit: openFilesLimit() },
    seconds: round1(seconds),
    load: results.map((result) => result.load),
    targets,
  }
}

const shown = (f: Figure) => (Number.isNaN(f.median) ? '–' : `${f.median} (${f.min}–${f.max})`)
/** Under 0.1 kB of heap per stream the estimate says nothing but "not the limit". */
const estimate = (t: TargetMemory) => (t.heapPerStreamKB.median < 0.1 ? 'no heap per stream to speak of' : shown(t.streamsPer128MiB))

export function memoryReport(summary: MemorySummary): string[] {
  const names = (Object.keys(summary.targets) as MemoryTargetName[]).filter((name) => summary.targets[name])
  const loads = summary.load.map((values) => values[0] ?? Number.NaN)
  const lines = [
    '# Memory per open stream',
    '',
    `${summary.date}. ${summary.settings.rounds} rounds, the targets interleaved (order rotated each round), each round a fresh`,
    `workerd process per target. Streams held open: ${summary.settings.steps.join(', ')}; every stream's upstream (the emulator)`,
    `sends one event every ${summary.settings.eventIntervalMs / 1000} s and the client reads it; the prompt is ${summary.settings.promptChars > 0 ? `${summary.settings.promptChars} characters` : 'the 106-character question'}. Readings after two forced full GCs`,
    "(gc() evaluated through the V8 inspector, workerd started with --expose-gc) 1.5 s after the step's last stream got its first event.",
    'Heap: Runtime.getHeapUsage usedSize of the Worker isolate (its Durable Objects run in the same isolate under Miniflare);',
    'its embedderHeapUsedSize + backingStorageSize (ArrayBuffer contents) are apart, on their own row.',
    'RSS: VmRSS of the workerd process. Per stream: (reading with N open - reading with none) / N; kB = 1000 bytes.',
    'Streams per 128 MiB: (128 MiB - baseline heap) / heap per stream at 1,000 streams; the second estimate counts what the isolate',
    'has committed (V8 totalSize, live or not) and its embedder heap and ArrayBuffer contents. Median (min–max over the rounds).',
    `1-minute load average at the start of each round: ${round1(Math.min(...loads))}–${round1(Math.max(...loads))} (2 cores, shared).`,
    `The part took ${Math.round(summary.seconds)} s. Memory figures do not move with load; the durations do.`,
    '',
    `| per open stream, ${HEADLINE_STREAMS.toLocaleString('en')} streams | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
  ]
  const row = (label: string, pick: (target: TargetMemory) => string) =>
    lines.push(`| ${label} | ${names.map((name) => pick(summary.targets[name] as TargetMemory)).join(' | ')} |`)
  row('JS heap per stream, kB', (t) => shown(t.heapPerStreamKB))
  row('process memory (RSS) per stream, kB', (t) => shown(t.rssPerStreamKB))
  row('embedder heap + ArrayBuffer contents per stream, kB', (t) => shown(t.outsideHeapPerStreamKB))
  row('committed JS heap (V8 totalSize, live or not) per stream, kB', (t) => shown(t.committedPerStreamKB))
  row('baseline heap, MB', (t) => shown(t.baselineHeapMB))
  row('baseline RSS, MB', (t) => shown(t.baselineRssMB))
  row('open streams per isolate before 128 MiB of heap (estimate)', estimate)
  row('the same by committed heap + embedder heap + ArrayBuffer contents (estimate)', (t) =>
    t.heapPerStreamKB.median < 0.1 ? 'no heap per stream to speak of' : shown(t.streamsPer128MiBCommitted),
  )
  row('heap crossed 128 MiB at (measured, interpolated)', (t) => (t.measuredCrossing ? shown(t.measuredCrossing) : 'not within the steps'))
  row('streams lost (ended before the round ended them)', (t) => String(t.lost))
  row('seconds per round', (t) => shown(t.roundSeconds))
  lines.push('', 'The measured curve (medians over the rounds that reached the step; min–max in brackets):', '')
  lines.push(
    '| target | streams | rounds | heap MB | committed heap MB | RSS MB | heap per stream kB | RSS per stream kB |',
    '|---|---|---|---|---|---|---|---|',
  )
  for (const name of names) {
    const target = summary.targets[name] as TargetMemory
    lines.push(`| ${name} | 0 | ${target.rounds} | ${shown(target.baselineHeapMB)} | | ${shown(target.baselineRssMB)} | | |`)
    for (const point of target.curve)
      lines.push(
        `| ${name} | ${point.streams} | ${point.rounds} | ${shown(point.heapMB)} | ${shown(point.committedMB)} | ${shown(point.rssMB)} | ${shown(point.heapPerStreamKB)} | ${shown(point.rssPerStreamKB)} |`,
      )
  }
  const held = names.filter((name) => summary.targets[name]?.held)
  if (held.length > 0) {
    const last = summary.settings.steps.at(-1)
    lines.push('', `The last step's ${last} streams held open longer, then read again (per stream, from the baseline):`, '')
    lines.push('| target | held for, s | RSS per stream kB | heap per stream kB | committed heap per stream kB |', '|---|---|---|---|---|')
    for (const name of held) {
      const h = summary.targets[name]?.held as NonNullable<TargetMemory['held']>
      lines.push(`| ${name} | ${h.seconds} | ${shown(h.rssPerStreamKB)} | ${shown(h.heapPerStreamKB)} | ${shown(h.committedPerStreamKB)} |`)
    }
  }
  const stopped = names.flatMap((name) => (summary.targets[name] as TargetMemory).stopped.map((text) => `${name} ${text}`))
  if (stopped.length > 0) lines.push('', `Steps cut short: ${stopped.join('; ')}.`)
  return lines
}
