/**
 * Every `code` a client can find in a gateway error body (or in a stream session's `error`
 * event), as a runtime list so docs/api.md's table can be checked against it
 * (test/docs/error-codes.test.ts). ApiError takes only these, so a new code is a compile error
 * until it is added here, and a test failure until it is documented.
 * Errors relayed from a backend keep the backend's body; a mid-stream error event on the chat
 * route carries the HTTP status as a number, as vLLM does.
 */
export const ERROR_CODES = [
  // The request itself
  'invalid_json',
  'invalid_value',
  'unknown_parameter',
  'unsupported_parameter',
  'unsupported_media_type',
  'request_too_large',
  'incomplete_body',
  'request_body_timeout',
  'empty_prompt',
  'context_length_exceeded',
  'model_not_found',
  'method_not_allowed',
  'unknown_route',
  'invalid_window',
  'invalid_backend',
  'key_not_found',
  'previous_response_not_found',
  'item_not_found',
  'response_not_found',
  // Credentials and scopes
  'invalid_api_key',
  'insufficient_scope',
  'origin_not_allowed',
  'invalid_stream_token',
  'expired_stream_token',
  'stream_tokens_disabled',
  'dashboard_session_required',
  'dashboard_unavailable',
  'cross_site_request',
  // Limits
  'rate_limit_exceeded',
  'key_paused',
  'budget_exceeded',
  'rate_limiter_unavailable',
  // The fleet and its backends
  'backends_unavailable',
  'queue_full',
  'queue_timeout',
  'queue_displaced',
  'no_backend_available',
  'upstream_unreachable',
  'upstream_auth_failed',
  'upstream_credentials_missing',
  'upstream_bad_response',
  'upstream_error',
  'upstream_timeout',
  'request_too_slow',
  'upstream_connection_lost',
  'upstream_stream_truncated',
  'upstream_malformed_event',
  'upstream_event_too_large',
  'upstream_empty',
  'client_closed_request',
  // Stored responses
  'response_store_unavailable',
  // Stream sessions
  'stream_sessions_disabled',
  'stream_not_found',
  'stream_exists',
  'stream_expired',
  'invalid_stream_url',
  'expired_stream_url',
  'invalid_last_event_id',
  'stream_abandoned',
  'stream_cancelled',
  'stream_lifetime_exceeded',
  'stream_interrupted',
  // The gateway itself
  'gateway_misconfigured',
  'internal_error',
] as const

export type ErrorCode = (typeof ERROR_CODES)[number]
