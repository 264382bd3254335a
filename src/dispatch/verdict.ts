// Whose fault is a missed deadline: the backend's, or the request's own? Slow is not dead. vLLM
// v0.11.0 sends a chat request's response headers once it has rendered the chat template and
// tokenized the prompt (entrypoints/openai/serving_chat.py, create_chat_completion: the
// StreamingResponse is returned after _preprocess_chat), and before the engine queues it. So late
// headers mean either a request whose own preprocessing is slow (a huge prompt), or a backend that
// is frozen, gone or lagging for everyone. The two are told apart by what the backend does for
// others, in this order:
// - it answered a request sent after this one: it is alive and moving, the wait is the request's;
// - its /health (the same API server's event loop) does not answer: it is frozen, gone or lagging
//   for everyone, so it is the backend's. (Its other requests waiting too prove nothing: they may
//   be poison requests of the same kind.);
// - else (nothing newer answered, /health answers) nothing tells yet: "unexplained". The
//   request may then try one other backend: if that one answers it promptly, the first backend was
//   at fault after all (the caller ejects it then); if it misses there too, the request is slow
//   everywhere and is the one to blame (src/dispatch/attempts.ts). A request blamed is not carried
//   on to the next backend to do the same there.
// A silent /health is evidence against the backend only while nothing else explains it. Under a
// burst (issue 29: 1,000 streams at once) two things did, and busy backends were ejected and their
// streams cut with a 504 "no response headers" that they had sent or were about to send:
// - the gateway's own event loop fell seconds behind: the check's timeout fired before the
//   gateway had read an answer that came in milliseconds. A check that timed out while the
//   gateway's timers ran late blames nobody;
// - the backend was answering, in arrival order, the hundreds of requests sent before this one:
//   its /health waited behind them on its event loop. A backend that answered any request since
//   this one was sent is busy, not frozen, and is not blamed either.
// Then ("nobody") the call waits on to its next deadline (src/dispatch/upstream-call.ts).
import { backendHeaders, type BackendCredentials } from '../fleet/access.ts'
import type { CircuitBreaker, Stage } from '../fleet/circuit.ts'
import type { BackendRecord } from '../fleet/records.ts'

/** nobody: the gateway lagged while it checked, or the backend is busy with earlier requests: the check proves nothing. */
export type Blame = 'backend' | 'request' | 'unexplained' | 'nobody'

export interface MissedDeadline {
  backend: BackendRecord
  circuit: CircuitBreaker
  stage: Stage
  /** When the request that missed was sent. */
  sentAt: number
  credentials: BackendCredentials
  /** The health check's bound: past it without an answer, the backend is the one to blame. */
  checkTimeoutMs: number
}

/**
 * How long a health check may take: half the headers deadline (1.5 s by default), and never more
 * than MAX_HEALTH_CHECK_MS. Long enough for a busy vLLM's /health (milliseconds) and for a fleet
 * whose API servers lag 4 s (the headers then arrive within it); a /health slower than that is no
 * answer. The same bound decides an ejected backend's return (src/dispatch/recovery.ts).
 */
export function healthCheckTimeoutMs(headersDeadlineMs: number | undefined): number {
  return Math.min(MAX_HEALTH_CHECK_MS, Math.ceil((headersDeadlineMs ?? 3_000) / 2))
}

/** A deployment with a long headers deadline (or only the 30 s first-event one) still learns in seconds. */
const MAX_HEALTH_CHECK_MS = 2_000

/**
 * How late the gateway's own timers may run before a health check's silence stops counting against
 * the backend. An idle isolate runs a due timer within a few ms; a quarter of a second late means
 * its event loop is queued up behind other work, and an answer may be sitting unread in that queue.
 */
export const GATEWAY_LAG_TOLERANCE_MS = 250

/**
 * Measures how far behind the gateway's own event loop ran during a health check of `timeoutMs`:
 * started with the check, read once it timed out.
 */
export type LagMeter = (timeoutMs: number) => { lateBy(): Promise<number> }

/** How late a timer due now runs, in ms. */
function timerLag(): Promise<number> {
  const scheduledAt = Date.now()
  return new Promise((resolve) => setTimeout(() => resolve(Date.now() - scheduledAt), 0))
}

/** The largest of: the check's timeout firing late, and a due timer's delay at its start and at its end. */
export const eventLoopLag: LagMeter = (timeoutMs) => {
  const startedAt = Date.now()
  const atStart = timerLag()
  return {
    lateBy: async () => Math.max(Date.now() - startedAt - timeoutMs, await atStart, await timerLag()),
  }
}

/**
 * Judges a missed deadline: from the other requests first (free), else from one health check,
 * unless that check timed out while the gateway itself lagged (`lag`) or the backend kept
 * answering older requests.
 */
export async function judgeMissedDeadline(missed: MissedDeadline, lag: LagMeter = eventLoopLag): Promise<Blame> {
  if (missed.circuit.reachedAfter(missed.stage, missed.sentAt)) return 'request'
  const meter = lag(missed.checkTimeoutMs)
  const answer = await healthAnswer(missed.backend, missed.credentials, missed.checkTimeoutMs)
  if (answer === 'healthy') return 'unexplained'
  // A refusal or an error status is an answer, however late the gateway read it.
  if (answer === 'unhealthy') return 'backend'
  if ((await meter.lateBy()) > GATEWAY_LAG_TOLERANCE_MS) return 'nobody'
  return missed.circuit.reachedSince(missed.stage, missed.sentAt) ? 'nobody' : 'backend'
}

/**
 * vLLM's GET /health: 200 while its engine is alive (api_server.py), answered by the same event loop
 * as chat. One per missed deadline, never shared: a check shared with a request that missed earlier
 * would time out before this one's grace is over, and under a fleet-wide lag (every backend 4 s
 * late) that blamed backends whose answer was on its way.
 */
export async function checkHealth(backend: BackendRecord, credentials: BackendCredentials, timeoutMs: number): Promise<boolean> {
  return (await healthAnswer(backend, credentials, timeoutMs)) === 'healthy'
}

/** The health check's outcome: 200; another status or no connection; or nothing within the bound. */
async function healthAnswer(
  backend: BackendRecord,
  credentials: BackendCredentials,
  timeoutMs: number,
): Promise<'healthy' | 'unhealthy' | 'silent'> {
  const signal = AbortSignal.timeout(timeoutMs)
  try {
    const response = await fetch(`${backend.url}/health`, { headers: backendHeaders(backend, credentials), signal, redirect: 'manual' })
    await response.body?.cancel()
    return response.status === 200 ? 'healthy' : 'unhealthy'
  } catch {
    return signal.aborted ? 'silent' : 'unhealthy'
  }
}
