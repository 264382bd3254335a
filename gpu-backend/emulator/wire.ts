// Stream chunks exactly as vLLM serializes them. Chat chunks come from pydantic's
// model_dump_json(exclude_unset=True): compact, keys in field-declaration order, and a
// field appears only when vLLM's code set it. Completion chunks use exclude_unset=False,
// so every field is present. JS keeps insertion order for string keys, so each builder
// inserts keys in vLLM's declaration order.

import type { Json } from './errors.ts'
import type { ReasoningField } from './options.ts'
import type { Token } from './text.ts'

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
 * DeltaMessage fields in declaration order: role, content, reasoning, reasoning_content.
 * In the "both" era a validator copies `reasoning` into `reasoning_content` on every
 * DeltaMessage, which marks it as set, so it is present (null) even in content deltas.
 */
function delta(cfg: WireConfig, fields: { role?: string; content?: string; reasoning?: string }): Delta {
  const out: Delta = {}
  if (fields.role !== undefined) out.role = fields.role
  if (fields.content !== undefined) out.content = fields.content
  if (cfg.reasoningField === 'reasoning_content') {
    if (fields.reasoning !== undefined) out.reasoning_content = fields.reasoning
  } else {
    if (fields.reasoning !== undefined) out.reasoning = fields.reasoning
    if (cfg.reasoningField === 'both') out.reasoning_content = fields.reasoning ?? null
  }
  return out
}

/** DeltaMessage() with nothing set: what a finish chunk carries when its token showed no text. */
export function emptyDelta(cfg: WireConfig): Delta {
  return delta(cfg, {})
}

/**
 * The delta one token produces, or null for none. With the deepseek_r1 parser the
 * `</think>` token alone produces nothing; without it every token is plain content.
 */
export function deltaForToken(cfg: WireConfig, token: Token): Delta | null {
  if (!cfg.reasoningParser || token.kind === 'content' || token.kind === 'eos') return delta(cfg, { content: token.text })
  if (token.kind === 'think_end') return null
  return delta(cfg, { reasoning: token.text })
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

/** The first chunk: role and empty content; no token_ids in its choice, prompt_token_ids at top level. */
export function chatRoleChunk(cfg: WireConfig, usage: Usage | null): string {
  const choice = { index: 0, delta: delta(cfg, { role: 'assistant', content: '' }), logprobs: null, finish_reason: null }
  return chatChunk(cfg, [choice], usage, true)
}

export function chatTokenChunk(cfg: WireConfig, tokenDelta: Delta, usage: Usage | null): string {
  const choice: { [key: string]: Json } = { index: 0, delta: tokenDelta, logprobs: null, finish_reason: null }
  if (cfg.tokenIdsFields) choice.token_ids = null
  return chatChunk(cfg, [choice], usage)
}

/** The chunk of the last token: it carries that token's delta, the finish reason and stop_reason. */
export function chatFinishChunk(cfg: WireConfig, tokenDelta: Delta, reason: FinishReason, usage: Usage | null): string {
  const choice: { [key: string]: Json } = {
    index: 0,
    delta: tokenDelta,
    logprobs: null,
    finish_reason: reason,
    stop_reason: null,
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
  text: string,
  reason: FinishReason | null,
  usage: Usage | null,
): string {
  const choice: { [key: string]: Json } = { index: 0, text, logprobs: null, finish_reason: reason, stop_reason: null }
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
