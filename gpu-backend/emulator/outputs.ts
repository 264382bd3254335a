// One choice's path from sampled token to RequestOutput in vLLM v0.11.0's V1 engine:
// the engine core's stop check (vllm/v1/core/sched/utils.py check_stop), the incremental
// detokenizer's stop strings and held-back text (vllm/v1/engine/detokenizer.py
// BaseIncrementalDetokenizer.update, get_next_output_text, check_stop_strings), and the
// collector that merges outputs when the API server falls behind
// (vllm/v1/engine/output_processor.py RequestOutputCollector.put, vllm/outputs.py RequestOutput.add).

import type { Sampling } from './sampling.ts'
import type { Token } from './text.ts'
import type { FinishReason } from './wire.ts'

export type StopReason = string | number | null

/** A CompletionOutput in DELTA mode: what one engine step (or several, merged) added to a choice. */
export type ChoiceOutput = {
  index: number
  text: string
  tokens: Token[]
  finishReason: FinishReason | null
  stopReason: StopReason
}

function codePointLength(text: string): number {
  return Array.from(text).length
}

/** The first stop string that ends inside the new text: [stop, truncate-to (UTF-16), or -1]. */
function checkStopStrings(text: string, newChars: number, stops: readonly string[], include: boolean): [string, number] | null {
  if (newChars === 0) return null
  for (const stop of stops) {
    // Search only where a match can end in the new text ("Avoid searching already-searched text").
    const from = Math.max(0, text.length - newChars - stop.length + 1)
    let at = text.indexOf(stop, from)
    if (at === -1) continue
    if (include) {
      at += stop.length
      if (at >= text.length) return [stop, -1]
    }
    return [stop, at]
  }
  return null
}

/** Generates one choice token by token; `step()` returns what the output processor hands on. */
export class ChoiceDecoder {
  readonly index: number
  private readonly plan: readonly Token[]
  private readonly maxTokens: number
  private readonly sampling: Sampling
  /** Code points held back while streaming, so a stop string is never half sent. */
  private readonly holdBack: number
  private produced = 0
  /** UTF-16 offset into outputText of what has been handed on. */
  private sentUpTo = 0
  outputText = ''
  finishReason: FinishReason | null = null
  stopReason: StopReason = null
  readonly tokens: Token[] = []

  constructor(index: number, plan: readonly Token[], maxTokens: number, sampling: Sampling) {
    this.index = index
    this.plan = plan
    this.maxTokens = maxTokens
    this.sampling = sampling
    const stops = sampling.stop
    this.holdBack = stops.length > 0 && !sampling.includeStopStrInOutput ? Math.max(...stops.map(codePointLength)) - 1 : 0
  }

  get finished(): boolean {
    return this.finishReason !== null
  }

  /** One engine step: the next token, the engine's stop check, then the detokenizer's. */
  step(): ChoiceOutput | null {
    const token = this.plan[this.produced]
    if (this.finished || token === undefined) return null
    this.produced += 1
    this.tokens.push(token)
    this.engineStop(token)
    // A token that ended the sequence (EOS, a stop id) is not detokenized unless asked to.
    const stopTerminated = this.finishReason === 'stop'
    const before = this.outputText.length
    if (!stopTerminated || this.sampling.includeStopStrInOutput) this.outputText += token.text
    if (this.sampling.stop.length > 0 && this.produced > this.sampling.minTokens) {
      const newChars = this.outputText.length - before
      const match = checkStopStrings(this.outputText, newChars, this.sampling.stop, this.sampling.includeStopStrInOutput)
      if (match !== null) {
        const [stop, truncateTo] = match
        if (truncateTo !== -1) this.outputText = this.outputText.slice(0, truncateTo)
        this.finishReason = 'stop'
        this.stopReason = stop
      }
    }
    return { index: this.index, text: this.nextText(), tokens: [token], finishReason: this.finishReason, stopReason: this.stopReason }
  }

  /** check_stop: the length cap first, then EOS, then stop_token_ids (never before min_tokens). */
  private engineStop(token: Token): void {
    if (this.produced >= this.maxTokens) {
      this.finishReason = 'length'
      return
    }
    if (token.kind === 'eos') {
      this.finishReason = 'stop'
      return
    }
    if (this.produced > this.sampling.minTokens && this.sampling.stopTokenIds.includes(token.id)) {
      this.finishReason = 'stop'
      this.stopReason = token.id
    }
  }

  /**
   * get_next_output_text(finished, delta=True): the new text, less what is held back. Works on
   * UTF-16 offsets from the end, so a long generation costs the same per token as a short one.
   */
  private nextText(): string {
    const text = this.outputText
    let end = text.length
    if (!this.finished) {
      for (let held = 0; held < this.holdBack && end > 0; held++) end -= end >= 2 && isSurrogatePair(text, end - 2) ? 2 : 1
    }
    if (this.sentUpTo >= end) return ''
    const next = text.slice(this.sentUpTo, end)
    this.sentUpTo = end
    return next
  }
}

function isSurrogatePair(text: string, at: number): boolean {
  const high = text.charCodeAt(at)
  const low = text.charCodeAt(at + 1)
  return high >= 0xd800 && high <= 0xdbff && low >= 0xdc00 && low <= 0xdfff
}

/** RequestOutputCollector.put with DELTA outputs: a choice already pending absorbs the new output. */
export function collect(pending: ChoiceOutput[], output: ChoiceOutput): void {
  const same = pending.find((entry) => entry.index === output.index)
  if (same === undefined) {
    pending.push({ ...output, tokens: [...output.tokens] })
    return
  }
  same.text += output.text
  same.tokens.push(...output.tokens)
  same.finishReason = output.finishReason
  same.stopReason = output.stopReason
}
