// Fields vLLM v0.11.0 knows (`vllm/entrypoints/openai/protocol.py`, ChatCompletionRequest) that
// cannot work through this gateway, each with the reason the client is told. Any other field the
// schema does not name gets OpenAI's "Unrecognized request argument supplied" instead.

const DEPRECATED_GUIDED = 'is deprecated in vLLM v0.11.0 and removed in v0.12: use response_format or structured_outputs instead.'
const PROMPT_RULES = 'is set by the gateway: the DeepSeek-R1 prompt rules decide how the prompt ends.'
const FIXED_TEMPLATE = 'is not available: the chat template is fixed by the deployment.'

export const REFUSED_FIELDS: Readonly<Record<string, string>> = {
  guided_json: DEPRECATED_GUIDED,
  guided_regex: DEPRECATED_GUIDED,
  guided_choice: DEPRECATED_GUIDED,
  guided_grammar: DEPRECATED_GUIDED,
  guided_whitespace_pattern: DEPRECATED_GUIDED,
  guided_decoding_backend: 'is deprecated in vLLM v0.11.0: the backend chooses the structured-output engine.',
  structural_tag: DEPRECATED_GUIDED,
  continue_final_message: PROMPT_RULES,
  add_generation_prompt: PROMPT_RULES,
  add_special_tokens: PROMPT_RULES,
  echo: PROMPT_RULES,
  chat_template: FIXED_TEMPLATE,
  chat_template_kwargs: FIXED_TEMPLATE,
  documents: FIXED_TEMPLATE,
  // vllm/v1/engine/processor.py, _validate_supported_sampling_params.
  logits_processors: 'is not available: vLLM V1 does not support per request user provided logits processors.',
  use_beam_search: 'is not available through this gateway (sampling only).',
  length_penalty: 'only applies to beam search, which is not available.',
  // The gateway always streams from vLLM, and vLLM refuses prompt_logprobs with stream=True (check_logprobs).
  prompt_logprobs: 'is not available: prompt logprobs cannot be streamed.',
  request_id: 'is set by the gateway: each backend attempt gets its own request id. Send X-Request-Id to correlate.',
  reasoning_effort: 'has no effect on DeepSeek-R1-Distill, which always reasons.',
}
