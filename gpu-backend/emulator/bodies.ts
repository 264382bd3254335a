// Whole-response JSON bodies (stream: false, /v1/models). vLLM returns these with
// JSONResponse(content=model.model_dump()): every field present, compact, declaration order.

import { randomUUID } from 'node:crypto'
import type { Json } from './errors.ts'
import type { EmulatorOptions } from './options.ts'
import type { Token } from './text.ts'
import type { FinishReason, Usage, WireConfig } from './wire.ts'

/** vLLM's random_uuid() (vllm/utils/__init__.py): uuid4().hex, 32 hex characters. */
export function randomUuidHex(): string {
  return randomUUID().replaceAll('-', '')
}

/** "modelperm-" and other vLLM ids made of a prefix and random_uuid(). */
export function responseId(prefix: string): string {
  return `${prefix}${randomUuidHex()}`
}

/**
 * The request id, which is also the response id: "chatcmpl-" (or "cmpl-") + _base_request_id
 * (serving_engine.py): the X-Request-Id header when present, else the body's request_id, else
 * random_uuid(); an empty body request_id counts as absent (`default or random_uuid()`).
 */
export function requestId(prefix: string, header: string | undefined, bodyRequestId: string | null): string {
  return `${prefix}${header ?? (bodyRequestId || randomUuidHex())}`
}

export type Answer = { content: string | null; reasoning: string | null }

/**
 * How vLLM splits the generated text into message fields. Without a parser all of it is
 * content. The deepseek_r1 parser puts what precedes `</think>` in reasoning and what follows
 * in content (null when empty); output cut off before `</think>` is all reasoning.
 */
export function splitAnswer(tokens: readonly Token[], reasoningParser: boolean): Answer {
  const join = (part: readonly Token[]) => part.map((token) => token.text).join('')
  if (!reasoningParser) return { content: join(tokens), reasoning: null }
  const end = tokens.findIndex((token) => token.kind === 'think_end')
  if (end === -1) return { content: null, reasoning: join(tokens) }
  const content = join(tokens.slice(end + 1))
  return { content: content === '' ? null : content, reasoning: join(tokens.slice(0, end)) }
}

function chatMessage(cfg: WireConfig, answer: Answer): { [key: string]: Json } {
  const message: { [key: string]: Json } = {
    role: 'assistant',
    content: answer.content,
    refusal: null,
    annotations: null,
    audio: null,
    function_call: null,
    tool_calls: [],
  }
  if (cfg.reasoningField === 'reasoning_content') message.reasoning_content = answer.reasoning
  else message.reasoning = answer.reasoning
  if (cfg.reasoningField === 'both') message.reasoning_content = answer.reasoning
  return message
}

function fullUsage(usage: Usage): { [key: string]: Json } {
  return { ...usage, prompt_tokens_details: null }
}

export function chatCompletionBody(cfg: WireConfig, answer: Answer, reason: FinishReason, usage: Usage): string {
  const choice: { [key: string]: Json } = {
    index: 0,
    message: chatMessage(cfg, answer),
    logprobs: null,
    finish_reason: reason,
    stop_reason: null,
  }
  if (cfg.tokenIdsFields) choice.token_ids = null
  const body: { [key: string]: Json } = {
    id: cfg.id,
    object: 'chat.completion',
    created: cfg.created,
    model: cfg.model,
    choices: [choice],
    service_tier: null,
    system_fingerprint: null,
    usage: fullUsage(usage),
    prompt_logprobs: null,
  }
  if (cfg.tokenIdsFields) body.prompt_token_ids = null
  body.kv_transfer_params = null
  return JSON.stringify(body)
}

export function textCompletionBody(cfg: WireConfig, text: string, reason: FinishReason, usage: Usage): string {
  const choice: { [key: string]: Json } = { index: 0, text, logprobs: null, finish_reason: reason, stop_reason: null }
  if (cfg.tokenIdsFields) choice.token_ids = null
  choice.prompt_logprobs = null
  if (cfg.tokenIdsFields) choice.prompt_token_ids = null
  return JSON.stringify({
    id: cfg.id,
    object: 'text_completion',
    created: cfg.created,
    model: cfg.model,
    choices: [choice],
    service_tier: null,
    system_fingerprint: null,
    usage: fullUsage(usage),
    kv_transfer_params: null,
  })
}

/** GET /v1/models: one ModelCard for the served name, with vLLM's default permission entry. */
export function modelsBody(options: EmulatorOptions, created: number): string {
  const permission = {
    id: responseId('modelperm-'),
    object: 'model_permission',
    created,
    allow_create_engine: false,
    allow_sampling: true,
    allow_logprobs: true,
    allow_search_indices: false,
    allow_view: true,
    allow_fine_tuning: false,
    organization: '*',
    group: null,
    is_blocking: false,
  }
  const card = {
    id: options.servedModelName,
    object: 'model',
    created,
    owned_by: 'vllm',
    root: options.model,
    parent: null,
    max_model_len: options.maxModelLen,
    permission: [permission],
  }
  return JSON.stringify({ object: 'list', data: [card] })
}
