// Why a request ended: one vocabulary for dispatch (why it stopped its upstream calls), the relay
// (how a generation ended), stream sessions (why one stopped) and telemetry (each request record
// names its reason; /metrics and the latency record count the four outcomes the reasons fall in).

/**
 * - done: the answer was complete.
 * - refused: turned away before any backend was asked (invalid, over a limit, certainly over the
 *   context, the fleet full).
 * - client_gone: the client left (or, for a stream session, the caller cancelled or nobody listened).
 * - request_too_slow: a missed deadline laid on the request itself (src/dispatch/verdict.ts).
 * - backend_timeout: a missed deadline (headers, first event, silence) laid on the backend.
 * - backend_failed: the backend failed otherwise (unreachable, refused with 5xx, an error event,
 *   a lost or broken stream) and no other could take over.
 * - session_cancelled, session_abandoned, session_lifetime, session_interrupted: a stream session's
 *   own endings (docs/streams.md).
 */
export const END_REASONS = [
  'done',
  'refused',
  'client_gone',
  'request_too_slow',
  'backend_timeout',
  'backend_failed',
  'session_cancelled',
  'session_abandoned',
  'session_lifetime',
  'session_interrupted',
] as const

export type EndReason = (typeof END_REASONS)[number]

/**
 * ok: the answer was complete. upstream_error: a backend failed it. client_abort: the client left
 * first. refused: the gateway turned it away before any backend saw it.
 */
export type Outcome = 'ok' | 'upstream_error' | 'client_abort' | 'refused'

export const OUTCOMES: readonly Outcome[] = ['ok', 'upstream_error', 'client_abort', 'refused']

const OUTCOME_OF: Readonly<Record<EndReason, Outcome>> = {
  done: 'ok',
  refused: 'refused',
  client_gone: 'client_abort',
  // The backend was asked and answered others: not a refusal, not the client leaving.
  request_too_slow: 'upstream_error',
  backend_timeout: 'upstream_error',
  backend_failed: 'upstream_error',
  session_cancelled: 'client_abort',
  session_abandoned: 'client_abort',
  session_lifetime: 'upstream_error',
  session_interrupted: 'upstream_error',
}

export function outcomeOf(reason: EndReason): Outcome {
  return OUTCOME_OF[reason]
}

/** The endings of a request a backend was asked for, as a gateway error code tells them. */
export type FailureReason = Extract<EndReason, 'client_gone' | 'request_too_slow' | 'backend_timeout' | 'backend_failed'>

/** The ending a gateway error code stands for, once a backend was asked. */
export function reasonOfCode(code: string | null | undefined): FailureReason {
  if (code === 'client_closed_request') return 'client_gone'
  if (code === 'request_too_slow') return 'request_too_slow'
  if (code === 'upstream_timeout') return 'backend_timeout'
  return 'backend_failed'
}
