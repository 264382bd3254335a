// The model_validator(mode="before") checks of vLLM v0.11.0's request models
// (vllm/entrypoints/openai/protocol.py, ChatCompletionRequest and CompletionRequest). They see the
// raw JSON before any field is typed, and the first that raises is the request's only error.
// pydantic runs "before" validators from the last defined to the first, so they are listed here in
// that order.

import { isDict, type Dict } from './pydantic.ts'

export type Endpoint = 'chat' | 'completion'

type Check = (data: Dict) => string | null

const num = (value: unknown): number | null => (typeof value === 'number' ? value : null)

/** Python truthiness of a JSON value (the validators test `data.get(...)` directly). */
function truthy(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0
  if (isDict(value)) return Object.keys(value).length > 0
  return Boolean(value)
}

/** check_cache_salt_support (both models). */
const cacheSalt: Check = (data) => {
  const salt = data.cache_salt
  if (salt === undefined || salt === null) return null
  return typeof salt === 'string' && salt !== '' ? null : "Parameter 'cache_salt' must be a non-empty string if provided."
}

/** ChatCompletionRequest.check_generation_prompt */
const generationPrompt: Check = (data) =>
  truthy(data.continue_final_message) && truthy(data.add_generation_prompt)
    ? 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.'
    : null

/** Python's str() of a JSON value, as vLLM's f-strings print tool_choice. */
function pyStr(value: unknown): string {
  if (typeof value === 'string') return value
  if (value === true || value === false) return value ? 'True' : 'False'
  return JSON.stringify(value)
}

/** ChatCompletionRequest.check_tool_usage: tools without tool_choice mean "auto" (set in the data). */
const toolUsage: Check = (data) => {
  if (data.tool_choice === undefined && Array.isArray(data.tools) && data.tools.length > 0) data.tool_choice = 'auto'
  const choice = data.tool_choice
  if (choice === undefined || choice === null || choice === 'none') return null
  if (data.tools === undefined || data.tools === null) return 'When using `tool_choice`, `tools` must be set.'
  if (choice !== 'auto' && choice !== 'required' && !isDict(choice)) {
    return `Invalid value for \`tool_choice\`: ${pyStr(choice)}! Only named tools, "none", "auto" or "required" are supported.`
  }
  if (choice === 'required' && Array.isArray(data.tools) && data.tools.length === 0) {
    data.tool_choice = 'none'
    delete data.tools
    return null
  }
  if (!isDict(choice)) return null
  const name = isDict(choice.function) ? choice.function.name : undefined
  const tools = Array.isArray(data.tools) ? (data.tools as unknown[]) : []
  const matches = tools.some((tool) => isDict(tool) && isDict(tool.function) && tool.function.name === name)
  return matches ? null : 'The tool specified in `tool_choice` does not match any of the specified `tools`'
}

/** check_structured_outputs_count (both models): at most one of json, regex and choice. */
const structuredOutputsCount: Check = (data) => {
  const params = data.structured_outputs
  if (!isDict(params)) return null
  const count = ['json', 'regex', 'choice'].filter((key) => params[key] !== undefined && params[key] !== null).length
  return count > 1 ? "You can only use one kind of constraints for structured outputs ('json', 'regex' or 'choice')." : null
}

function promptLogprobs(data: Dict): string | null {
  const value = num(data.prompt_logprobs)
  if (value === null) return null
  if (truthy(data.stream) && (value > 0 || value === -1)) return '`prompt_logprobs` are not available when `stream=True`.'
  return value < 0 && value !== -1 ? '`prompt_logprobs` must be a positive value or -1.' : null
}

/** ChatCompletionRequest.check_logprobs */
const chatLogprobs: Check = (data) => {
  const prompt = promptLogprobs(data)
  if (prompt !== null) return prompt
  const top = num(data.top_logprobs)
  if (top === null) return null
  if (top < 0 && top !== -1) return '`top_logprobs` must be a positive value or -1.'
  return (top === -1 || top > 0) && !truthy(data.logprobs) ? 'when using `top_logprobs`, `logprobs` must be set to true.' : null
}

/** CompletionRequest.check_logprobs (logprobs is a count there). */
const completionLogprobs: Check = (data) => {
  const prompt = promptLogprobs(data)
  if (prompt !== null) return prompt
  const logprobs = num(data.logprobs)
  return logprobs !== null && logprobs < 0 ? '`logprobs` must be a positive value.' : null
}

/** validate_stream_options (both): Python truthiness, so an empty object passes without stream. */
const streamOptions: Check = (data) => {
  return truthy(data.stream_options) && !truthy(data.stream) ? 'Stream options can only be defined when `stream=True`.' : null
}

/** CompletionRequest.validate_prompt_and_prompt_embeds */
const promptOrEmbeds: Check = (data) => {
  const prompt = data.prompt
  const embeds = data.prompt_embeds
  const promptEmpty = prompt === undefined || prompt === null || prompt === ''
  const embedsEmpty = embeds === undefined || embeds === null || (Array.isArray(embeds) && embeds.length === 0)
  return promptEmpty && embedsEmpty ? 'Either prompt or prompt_embeds must be provided and non-empty.' : null
}

const CHAT: readonly Check[] = [cacheSalt, generationPrompt, toolUsage, structuredOutputsCount, chatLogprobs, streamOptions]
const COMPLETION: readonly Check[] = [cacheSalt, promptOrEmbeds, streamOptions, completionLogprobs, structuredOutputsCount]

/** The message of the first "before" validator that fails, or null. May normalize tool_choice in `data`. */
export function runBeforeValidators(endpoint: Endpoint, data: Dict): string | null {
  for (const check of endpoint === 'chat' ? CHAT : COMPLETION) {
    const message = check(data)
    if (message !== null) return message
  }
  return null
}
