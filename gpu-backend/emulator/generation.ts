// Runs one admitted generation against the clock: the first token after ttft, then one per itl.
// Streaming writes each event as one `res.write`; non-streaming answers at the last token.
// Faults fire at the moment the (N+1)th token chunk would have been sent.

import type { ServerResponse } from 'node:http'
import { errorBody, streamErrorEvent, type ApiError } from './errors.ts'
import { dueFault, type Fault } from './faults.ts'
import type { StreamFormat } from './formats.ts'
import { sendJson } from './http.ts'
import type { ErrorFormat } from './options.ts'
import type { GenerationTracker } from './stats.ts'
import type { Token } from './text.ts'
import { DONE_EVENT, malformedEvent, usageOf, type FinishReason, type WireConfig } from './wire.ts'

export type Generation = {
  tokens: readonly Token[]
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
  tracker: GenerationTracker
  /** Called with each SSE event's send time when event times are recorded. */
  recordEvent: ((id: string, time: number) => void) | null
}

/** The error a generation reports when `error_after` fires (vLLM's dead-engine message). */
export const ENGINE_ERROR: ApiError = {
  status: 500,
  type: 'InternalServerError',
  message: 'EngineCore encountered an issue. See stack trace (above) for the root cause.',
}

/** false: the generation is over; 'pause': go on after the generation's pause. */
type Step = (index: number, now: number) => boolean | 'pause'

/**
 * Calls `step` for each token until it returns false; returns a cancel function.
 * The first token comes ttft after the start, each next one itl after the previous,
 * like decode steps: a late step delays the ones after it instead of bunching them up.
 */
function runClock(gen: Generation, step: Step): () => void {
  let index = 0
  let timer: NodeJS.Timeout | undefined
  let immediate: NodeJS.Immediate | undefined
  const tick = () => {
    const keepGoing = step(index, performance.now())
    index += 1
    if (!keepGoing || index >= gen.tokens.length) return
    const delay = gen.itlMs + gen.extraItlMs() + (keepGoing === 'pause' ? (gen.pause?.ms ?? 0) : 0)
    // itl 0 means "as fast as possible": setTimeout(0) would still wait 1 ms per token, which
    // would make a throughput benchmark measure Node's timer floor instead of the relay.
    if (delay === 0) immediate = setImmediate(tick)
    else timer = setTimeout(tick, delay)
  }
  if (gen.tokens.length > 0) timer = setTimeout(tick, gen.ttftMs)
  return () => {
    clearTimeout(timer)
    clearImmediate(immediate)
  }
}

function finishReasonOf(token: Token): FinishReason {
  return token.kind === 'eos' ? 'stop' : 'length'
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
  let fault = gen.fault
  let chunksSent = 0
  const write = (event: string) => {
    res.write(event)
    gen.recordEvent?.(gen.wire.id, performance.timeOrigin + performance.now())
  }
  /**
   * Fires the fault due before the next token, as a backend that dies or stalls between two decode
   * steps: the token is then never generated, so the usage the stream reported so far is exact.
   * Returns false when the stream is over.
   */
  const survivesFault = (): boolean => {
    const due = dueFault(fault, chunksSent)
    if (due === null) return true
    if (due.kind === 'stall_after') return false
    if (due.kind === 'die_after') {
      gen.tracker.finish('fault', performance.now())
      res.destroy()
      return false
    }
    if (due.kind === 'error_after') {
      gen.tracker.finish('fault', performance.now())
      write(streamErrorEvent(gen.errorFormat, ENGINE_ERROR))
      write(DONE_EVENT)
      res.end()
      return false
    }
    write(malformedEvent(gen.wire))
    fault = { kind: 'none' }
    return true
  }
  const step: Step = (index, now) => {
    const token = gen.tokens[index]
    if (token === undefined || !survivesFault()) return false
    gen.tracker.tokenProduced(now)
    const usageNow = gen.continuousUsage ? usageOf(gen.promptTokens, index + 1) : null
    if (index === 0) {
      const opening = gen.format.opening(gen.continuousUsage ? usageOf(gen.promptTokens, 0) : null)
      if (opening !== null) write(opening)
    }
    if (index < gen.tokens.length - 1) {
      const chunk = gen.format.token(token, usageNow)
      if (chunk === null) return true
      write(chunk)
      chunksSent += 1
      return chunksSent === gen.pause?.afterChunks ? 'pause' : true
    }
    const reason = finishReasonOf(token)
    write(gen.format.finish(token, reason, usageNow))
    gen.tracker.finish(reason, now)
    if (gen.includeUsage) write(gen.format.usage(usageOf(gen.promptTokens, index + 1)))
    write(DONE_EVENT)
    res.end()
    return false
  }
  const cancel = runClock(gen, step)
  abortOnClose(gen, res, cancel)
  return cancel
}

/** Answers `gen` with one JSON body once its last token is out (stream: false). */
export function answerGeneration(gen: Generation, res: ServerResponse): () => void {
  const step: Step = (index, now) => {
    const due = dueFault(gen.fault, index)
    if (due !== null && due.kind !== 'malformed_after') {
      if (due.kind === 'stall_after') return false
      gen.tracker.finish('fault', now)
      if (due.kind === 'die_after') res.destroy()
      else sendJson(res, ENGINE_ERROR.status, errorBody(gen.errorFormat, ENGINE_ERROR))
      return false
    }
    gen.tracker.tokenProduced(now)
    const token = gen.tokens[index]
    if (token === undefined || index < gen.tokens.length - 1) return token !== undefined
    const reason = finishReasonOf(token)
    const body = gen.format.body(gen.tokens, reason, usageOf(gen.promptTokens, index + 1))
    gen.tracker.finish(reason, now)
    // A malformed non-streaming answer is the JSON cut in half, with a matching content-length.
    sendJson(res, 200, due !== null ? body.slice(0, Math.floor(body.length / 2)) : body)
    return false
  }
  const cancel = runClock(gen, step)
  abortOnClose(gen, res, cancel)
  return cancel
}
