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
import { backendHeaders, type BackendCredentials } from '../fleet/access.ts'
import type { CircuitBreaker, Stage } from '../fleet/circuit.ts'
import type { BackendRecord } from '../fleet/records.ts'

export type Blame = 'backend' | 'request' | 'unexplained'

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

/** Judges a missed deadline: from the other requests first (free), else from one health check. */
export async function judgeMissedDeadline(missed: MissedDeadline): Promise<Blame> {
  if (missed.circuit.reachedAfter(missed.stage, missed.sentAt)) return 'request'
  return (await checkHealth(missed.backend, missed.credentials, missed.checkTimeoutMs)) ? 'unexplained' : 'backend'
}

/**
 * vLLM's GET /health: 200 while its engine is alive (api_server.py), answered by the same event loop
 * as chat. One per missed deadline, never shared: a check shared with a request that missed earlier
 * would time out before this one's grace is over, and under a fleet-wide lag (every backend 4 s
 * late) that blamed backends whose answer was on its way.
 */
export async function checkHealth(backend: BackendRecord, credentials: BackendCredentials, timeoutMs: number): Promise<boolean> {
  try {
    const response = await fetch(`${backend.url}/health`, {
      headers: backendHeaders(backend, credentials),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    })
    await response.body?.cancel()
    return response.status === 200
  } catch {
    return false
  }
}
