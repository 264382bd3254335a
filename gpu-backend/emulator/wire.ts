// Stream chunks exactly as vLLM serializes them. Chat chunks come from pydantic's
// model_dump_json(exclude_unset=True): compact, keys in field-declaration order, and a
// field appears only when vLLM's code set it. Completion chunks use exclude_unset=False,
// so every field is present. JS keeps insertion order for string keys, so each builder
// inserts keys in vLLM's declaration order.

import type { Json } from './errors.ts'
import type { ReasoningField } from './options.ts'
import type { StopReason } from './outputs.ts'
import type { DeltaFields } from './reasoning.ts'

export type Usage = { prompt_tokens: number; total_tokens: number; completion_tokens: number }
export type Delta = { [key: string]: string | null }
export type FinishReason = 'stop' | 'length'

export type WireConfig = {
  id: string
  created: number
  model: string
  reasoningField: ReasoningField
  tokenIdsFields: boolean
  /** --reasoning-parser deepseek_r1 is on. */
  reasoningParser: boolean
}

export const DONE_EVENT = 'data: [DONE]\n\n'

export function usageOf(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, total_tokens: promptTokens + completionTokens, completion_tokens: completionTokens }
}

function sse(value: Json): string {
  return `data: ${JSON.stringify(value)}\n\n`
}

/**
 * A DeltaMessage as vLLM dumps it, by era (protocol.py DeltaMessage, declaration order):
 * - reasoning_content (v0.11.0): role, content, reasoning_content; only the fields set.
 * - both (#27752, 2025-11-08): role, content, reasoning, reasoning_content; an after-validator
 *   assigns reasoning_content = reasoning on every DeltaMessage, which marks it set, so it is
 *   present in every delta (null outside reasoning).
 * - reasoning (#33402, 2026-01-30): role, content, reasoning.
 * - reasoning_null (some 2026 builds): as reasoning, plus "reasoning_content": null in every delta.
 * Without the reasoning parser no delta sets reasoning: the `</think>` text is in content.
 */
export function delta(cfg: WireConfig, fields: DeltaFields): Delta {
  const out: Delta = {}
  if (fields.role !== undefined) out.role = fields.role
  if (fields.content !== undefined) out.content = fields.content
  if (cfg.reasoningField === 'reasoning_content') {
    if (fields.reasoning !== undefined) out.reasoning_content = fields.reasoning
    return out
  }
  if (fields.reasoning !== undefined) out.reasoning = fields.reasoning
  if (cfg.reasoningField === 'both') out.reasoning_content = fields.reasoning ?? null
  if (cfg.reasoningField === 'reasoning_null') out.reasoning_content = null
  return out
}

function chatChunk(cfg: WireConfig, choices: Json[], usage: Usage | null, first = false): string {
  const chunk: { [key: string]: Json } = {
    id: cfg.id,
    object: 'chat.completion.chunk',
    created: cfg.created,
    model: cfg.model,
    choices,
  }
  if (usage !== null) chunk.usage = usage
  if (first && cfg.tokenIdsFields) chunk.prompt_token_ids = null
  return sse(chunk)
}

/**
 * A choice's first chunk: role and empty content; no token_ids in its choice, prompt_token_ids
 * at top level. With n > 1 each choice gets its own (serving_chat.py: `for i in range(num_choices)`).
 */
export function chatRoleChunk(cfg: WireConfig, index: number, usage: Usage | null): string {
  const choice = { index, delta: delta(cfg, { role: 'assistant', content: '' }), logprobs: null, finish_reason: null }
  return chatChunk(cfg, [choice], usage, true)
}

export function chatTokenChunk(cfg: WireConfig, index: number, tokenDelta: Delta, usage: Usage | null): string {
  const choice: { [key: string]: Json } = { index, delta: tokenDelta, logprobs: null, finish_reason: null }
  if (cfg.tokenIdsFields) choice.token_ids = null
  return chatChunk(cfg, [choice], usage)
}

/** A choice's last chunk: its last delta, the finish reason and stop_reason (a stop string or token id). */
export function chatFinishChunk(
  cfg: WireConfig,
  index: number,
  tokenDelta: Delta,
  reason: FinishReason,
  stopReason: StopReason,
  usage: Usage | null,
): string {
  const choice: { [key: string]: Json } = {
    index,
    delta: tokenDelta,
    logprobs: null,
    finish_reason: reason,
    stop_reason: stopReason,
  }
  if (cfg.tokenIdsFields) choice.token_ids = null
  return chatChunk(cfg, [choice], usage)
}

/** The include_usage chunk (dumped with exclude_none, so no prompt_tokens_details). */
export function chatUsageChunk(cfg: WireConfig, usage: Usage): string {
  return chatChunk(cfg, [], usage)
}

/** A text_completion chunk: every field present, usage null unless continuous usage is on. */
export function completionChunk(
  cfg: WireConfig,
  index: number,
  text: string,
  finish: { reason: FinishReason | null; stopReason: StopReason },
  usage: Usage | null,
): string {
  const choice: { [key: string]: Json } = { index, text, logprobs: null, finish_reason: finish.reason, stop_reason: finish.stopReason }
  if (cfg.tokenIdsFields) {
    choice.prompt_token_ids = null
    choice.token_ids = null
  }
  const fullUsage = usage === null ? null : { ...usage, prompt_tokens_details: null }
  return sse({ id: cfg.id, object: 'text_completion', created: cfg.created, model: cfg.model, choices: [choice], usage: fullUsage })
}

export function completionUsageChunk(cfg: WireConfig, usage: Usage): string {
  return sse({ id: cfg.id, object: 'text_completion', created: cfg.created, model: cfg.model, choices: [], usage })
}

/** A data line that is not valid JSON: the start of a chunk, cut off inside a string. */
export function malformedEvent(cfg: WireConfig): string {
  return `data: {"id":"${cfg.id.slice(0, 12)}\n\n`
}
