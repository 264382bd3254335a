// The fields of vLLM v0.11.0's ChatCompletionRequest and CompletionRequest (protocol.py), in
// declaration order. OpenAIBaseModel allows extra fields: an unknown one is accepted, logged as
// "The following fields were present in the request but ignored: ..." (__log_extra_fields__), and
// has no effect. The emulator records those names in its request log instead.

const CHAT_FIELDS = `messages model frequency_penalty logit_bias logprobs top_logprobs max_tokens max_completion_tokens n
presence_penalty response_format seed stop stream stream_options temperature top_p tools tool_choice reasoning_effort
include_reasoning parallel_tool_calls user best_of use_beam_search top_k min_p repetition_penalty length_penalty
stop_token_ids include_stop_str_in_output ignore_eos min_tokens skip_special_tokens spaces_between_special_tokens
truncate_prompt_tokens prompt_logprobs allowed_token_ids bad_words echo add_generation_prompt continue_final_message
add_special_tokens documents chat_template chat_template_kwargs mm_processor_kwargs structured_outputs guided_json
guided_regex guided_choice guided_grammar structural_tag guided_decoding_backend guided_whitespace_pattern priority
request_id logits_processors return_tokens_as_token_ids return_token_ids cache_salt kv_transfer_params vllm_xargs`

const COMPLETION_FIELDS = `model prompt best_of echo frequency_penalty logit_bias logprobs max_tokens n presence_penalty seed
stop stream stream_options suffix temperature top_p user use_beam_search top_k min_p repetition_penalty length_penalty
stop_token_ids include_stop_str_in_output ignore_eos min_tokens skip_special_tokens spaces_between_special_tokens
truncate_prompt_tokens allowed_token_ids prompt_logprobs prompt_embeds add_special_tokens response_format
structured_outputs guided_json guided_regex guided_choice guided_grammar guided_decoding_backend guided_whitespace_pattern
priority request_id logits_processors return_tokens_as_token_ids return_token_ids cache_salt kv_transfer_params vllm_xargs`

const KNOWN = {
  chat: new Set(CHAT_FIELDS.split(/\s+/)),
  completion: new Set(COMPLETION_FIELDS.split(/\s+/)),
}

/** The body's top-level fields the request model does not declare (vLLM ignores them). */
export function ignoredFields(endpoint: 'chat' | 'completion', body: { [key: string]: unknown }): string[] {
  return Object.keys(body).filter((key) => !KNOWN[endpoint].has(key))
}
