// Runs one admitted generation against the clock: each engine step (the first after ttft, then
// one per itl) gives every unfinished choice one token. Streaming writes each event as one
// `res.write`; non-streaming answers when the last choice ends. Faults fire at the moment the
// next engine step would have run.

import type { ServerResponse } from 'node:http'
import { engineDeadHttpError, engineDeadStreamError, type EngineLife } from './engine.ts'
import { errorBody, streamErrorEvent } from './errors.ts'
import { dueFault, type Fault, type Overrides } from './faults.ts'
import type { ChoiceResult, StreamFormat } from './formats.ts'
import { sendJson } from './http.ts'
import type { EmulatorOptions, ErrorFormat, VllmVersion } from './options.ts'
import { ChoiceDecoder, collect, type ChoiceOutput } from './outputs.ts'
import { DEFAULT_SAMPLING, type Sampling } from './sampling.ts'
import type { GenerationTracker } from './stats.ts'
import { chatTokenPlan, choiceKey, completionTokenPlan, type Token } from './text.ts'
import { DONE_EVENT, malformedEvent, usageOf, type WireConfig } from './wire.ts'

/** What the request's sampling fields make of the token plans (see generationShape). */
export type GenerationShape = {
  /** One token plan per choice (n), each already cut to max_tokens. */
  choices: readonly (readonly Token[])[]
  maxTokens: number
  sampling: Sampling
  /** Engine steps per delivered output after the first: the API server falling behind. */
  mergeTokens: number
  /** For the `dead_after` fault: when the port closes after the engine dies. */
  deadShutdownMs: number | null
}

export type Generation = GenerationShape & {
  promptTokens: number
  includeUsage: boolean
  continuousUsage: boolean
  wire: WireConfig
  format: StreamFormat
  /** Time to the first token once the scheduler admits the generation (its prefill). */
  ttftMs: number
  itlMs: number
  /** Added to itl at each decode step: the batch slowdown of the load model (0 by default). */
  extraItlMs: () => number
  /** One long gap in the stream, after `afterChunks` token chunks (streaming only). */
  pause: { afterChunks: number; ms: number } | null
  fault: Fault
  errorFormat: ErrorFormat
  /** The release emulated: the dead engine's error types (engine.ts). */
  vllmVersion: VllmVersion
  engine: EngineLife
  tracker: GenerationTracker
  /** Called with each SSE event's send time when event times are recorded. */
  recordEvent: ((id: string, time: number) => void) | null
}

type ShapeRequest = { endpoint: 'chat' | 'completion'; requestKey: string; maxTokens: number; sampling?: Sampling }

/**
 * The token plans of a request: n choices, each its own text (choice i seeded apart, as vLLM's
 * child requests, parallel_sampling.py). min_tokens keeps EOS from being sampled before that many
 * tokens (vllm/v1/sample/logits_processor/builtin.py MinTokensLogitsProcessor): the answer runs longer.
 */
export function generationShape(
  options: EmulatorOptions,
  request: ShapeRequest,
  settings: Pick<Overrides, 'reasoningTokens' | 'contentTokens' | 'mergeTokens'>,
): GenerationShape {
  const sampling = request.sampling ?? DEFAULT_SAMPLING
  const reasoningTokens = settings.reasoningTokens ?? options.reasoningTokens
  const chat = request.endpoint === 'chat'
  const planned = settings.contentTokens ?? options.contentTokens
  const beforeEos = chat ? reasoningTokens + 1 + planned : planned
  const contentTokens = planned + Math.max(0, sampling.minTokens - beforeEos)
  const plan = chat ? chatTokenPlan : completionTokenPlan
  const choices = Array.from({ length: sampling.n }, (_, index) =>
    plan({ seed: options.seed, requestKey: choiceKey(request.requestKey, index), reasoningTokens, contentTokens }).slice(
      0,
      request.maxTokens,
    ),
  )
  const mergeTokens = settings.mergeTokens ?? options.mergeTokens
  return { choices, maxTokens: request.maxTokens, sampling, mergeTokens: Math.max(1, mergeTokens), deadShutdownMs: options.deadShutdownMs }
}

/** false: the generation is over; 'pause': go on after the generation's pause. */
type Step = (index: number, now: number) => boolean | 'pause'

/**
 * Calls `step` once per engine step until it returns false; returns a cancel function.
 * The first step comes ttft after the start, each next one itl after the previous, like decode
 * steps: a late step delays the ones after it instead of bunching them up.
 */
function runClock(gen: Generation, step: Step): () => void {
  let index = 0
  let timer: NodeJS.Timeout | undefined
  let immediate: NodeJS.Immediate | undefined
  const steps = Math.max(0, ...gen.choices.map((plan) => plan.length))
  const tick = () => {
    const keepGoing = step(index, performance.now())
    index += 1
    if (!keepGoing || index >= steps) return
    const delay = gen.itlMs + gen.extraItlMs() + (keepGoing === 'pause' ? (gen.pause?.ms ?? 0) : 0)
    // itl 0 means "as fast as possible": setTimeout(0) would still wait 1 ms per token, which
    // would make a throughput benchmark measure Node's timer floor instead of the relay.
    if (delay === 0) immediate = setImmediate(tick)
    else timer = setTimeout(tick, delay)
  }
  if (steps > 0) timer = setTimeout(tick, gen.ttftMs)
  return () => {
    clearTimeout(timer)
    clearImmediate(immediate)
  }
}

/** The generation's choices and the outputs not yet handed to the API server. */
class Choices {
  readonly decoders: ChoiceDecoder[]
  pending: ChoiceOutput[] = []

  constructor(gen: Generation) {
    this.decoders = gen.choices.map((plan, index) => new ChoiceDecoder(index, plan, gen.maxTokens, gen.sampling))
  }

  /** One engine step for every unfinished choice; their outputs join the collector. */
  step(tracker: GenerationTracker, now: number): void {
    let tokens = 0
    for (const decoder of this.decoders) {
      const output = decoder.step()
      if (output === null) continue
      tokens += 1
      collect(this.pending, output)
    }
    if (tokens > 0) tracker.tokenProduced(now, tokens)
  }

  get done(): boolean {
    return this.decoders.every((decoder) => decoder.finished)
  }

  take(): ChoiceOutput[] {
    const taken = this.pending
    this.pending = []
    return taken
  }

  results(): ChoiceResult[] {
    return this.decoders.map((d) => ({
      index: d.index,
      text: d.outputText,
      tokens: d.tokens,
      finishReason: d.finishReason ?? 'length',
      stopReason: d.stopReason,
    }))
  }

  tokenCount(): number {
    return this.decoders.reduce((sum, decoder) => sum + decoder.tokens.length, 0)
  }

  /** The finish reason counted in /metrics: the last choice's. */
  reason(): 'stop' | 'length' {
    return this.decoders.at(-1)?.finishReason ?? 'length'
  }
}

/**
 * The first output reaches an idle API server alone; after it, with mergeTokens K, the server
 * takes the collector only every K engine steps and gets K steps' tokens merged in one delta.
 */
function delivers(gen: Generation, index: number): boolean {
  return index % gen.mergeTokens === 0
}

/** Ends the generation as aborted if the client goes away before it is done. */
function abortOnClose(gen: Generation, res: ServerResponse, cancel: () => void): void {
  res.on('close', () => {
    cancel()
    gen.tracker.finish('abort', performance.now())
  })
}

/** Streams the events of `gen` on a response whose 200 headers are already sent. */
export function streamGeneration(gen: Generation, res: ServerResponse): () => void {
  const choices = new Choices(gen)
  const counts = gen.choices.map(() => 0) // serving_chat.py previous_num_tokens, per choice
  let fault = gen.fault
  let chunksSent = 0
  let opened = false
  let paused = false
  let cancel = () => {}
  const write = (event: string) => {
    res.write(event)
    gen.recordEvent?.(gen.wire.id, performance.timeOrigin + performance.now())
  }
  // Any exception in the stream generator becomes one error event, then [DONE].
  const fail = () => {
    cancel()
    gen.tracker.finish('fault', performance.now())
    write(streamErrorEvent(gen.errorFormat, engineDeadStreamError(gen.vllmVersion)))
    write(DONE_EVENT)
    res.end()
  }
  if (gen.engine.dead) {
    fail() // admitted from the queue as the engine died: the error is the first event
    return cancel
  }
  const unwatch = gen.engine.watch(fail)
  const usageAt = (tokens: number) => (gen.continuousUsage ? usageOf(gen.promptTokens, tokens) : null)
  /** The stream generator's loop over one RequestOutput: role chunks first, then one chunk per output. */
  const deliver = (outputs: readonly ChoiceOutput[]) => {
    if (!opened) for (const event of gen.format.opening(gen.choices.length, usageAt(0))) write(event)
    opened = true
    for (const output of outputs) {
      counts[output.index] = (counts[output.index] ?? 0) + output.tokens.length
      const event = gen.format.output(output, usageAt(counts[output.index] ?? 0))
      if (event === null) continue
      write(event)
      chunksSent += 1
    }
  }
  /**
   * Fires the fault due before the next engine step, as a backend that dies or stalls between two
   * decode steps: that token is never generated, so the usage reported so far is exact.
   * Returns false when the stream is over.
   */
  const survivesFault = (): boolean => {
    const due = dueFault(fault, chunksSent)
    if (due === null) return true
    if (due.kind === 'stall_after') return false
    if (due.kind === 'dead_after') gen.engine.kill(gen.deadShutdownMs)
    else if (due.kind === 'error_after') fail()
    else if (due.kind === 'die_after') {
      gen.tracker.finish('fault', performance.now())
      res.destroy()
    } else {
      write(malformedEvent(gen.wire))
      fault = { kind: 'none' }
      return true
    }
    return false
  }
  const step: Step = (index, now) => {
    if (!survivesFault()) return false
    choices.step(gen.tracker, now)
    const done = choices.done
    if (done || delivers(gen, index)) deliver(choices.take())
    if (!done) {
      const pauseDue = gen.pause !== null && gen.pause.afterChunks > 0 && chunksSent >= gen.pause.afterChunks
      if (!pauseDue || paused) return true
      paused = true
      return 'pause'
    }
    unwatch()
    gen.tracker.finish(choices.reason(), now)
    // The include_usage chunk: the total over the choices (sum(previous_num_tokens)).
    if (gen.includeUsage) write(gen.format.usage(usageOf(gen.promptTokens, choices.tokenCount())))
    write(DONE_EVENT)
    res.end()
    return false
  }
  cancel = runClock(gen, step)
  abortOnClose(gen, res, () => {
    cancel()
    unwatch()
  })
  return () => cancel()
}

/** Answers `gen` with one JSON body once its last choice ends (stream: false). */
export function answerGeneration(gen: Generation, res: ServerResponse): () => void {
  const choices = new Choices(gen)
  let cancel = () => {}
  // chat_completion_full_generator catches only ValueError: EngineDeadError reaches api_server.py's HTTPException(500).
  const fail = () => {
    cancel()
    gen.tracker.finish('fault', performance.now())
    const error = engineDeadHttpError(gen.vllmVersion)
    sendJson(res, error.status, errorBody(gen.errorFormat, error))
  }
  if (gen.engine.dead) {
    fail()
    return cancel
  }
  const unwatch = gen.engine.watch(fail)
  const step: Step = (index, now) => {
    const due = dueFault(gen.fault, index)
    if (due !== null && due.kind !== 'malformed_after') {
      if (due.kind === 'stall_after') return false
      if (due.kind === 'dead_after') gen.engine.kill(gen.deadShutdownMs)
      else if (due.kind === 'error_after') fail()
      else {
        gen.tracker.finish('fault', now)
        res.destroy()
      }
      return false
    }
    choices.step(gen.tracker, now)
    if (!choices.done) return true
    const total = choices.tokenCount()
    const body = gen.format.body(choices.results(), usageOf(gen.promptTokens, total))
    gen.tracker.finish(choices.reason(), now)
    unwatch()
    // A malformed non-streaming answer is the JSON cut in half, with a matching content-length.
    sendJson(res, 200, due !== null ? body.slice(0, Math.floor(body.length / 2)) : body)
    return false
  }
  cancel = runClock(gen, step)
  abortOnClose(gen, res, () => {
    cancel()
    unwatch()
  })
  return cancel
}
