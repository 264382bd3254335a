import { ApiError } from '../errors.ts'
import type { LiveStats } from '../fleet/live-stats.ts'
import type { BackendRecord } from '../fleet/records.ts'
import type { Candidate } from '../fleet/select.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { openUpstream } from './upstream.ts'
import { UpstreamCall, type UpstreamTimeouts } from './upstream-call.ts'

/** One backend's go at the request: its call (deadlines, abort) and, once accepted, its stream. */
export interface Attempt {
  backend: BackendRecord
  call: UpstreamCall
  upstream: ReadableStream<Uint8Array>
  /** The backend runs without a reasoning parser: the relay splits its content at `</think>`. */
  reasoningInContent: boolean
}

export interface AttemptOptions {
  clientSignal: AbortSignal
  timeouts: UpstreamTimeouts
  body: Record<string, unknown>
  apiKey: string | undefined
  requestId: string
  /** Backends tried at most, the first included. */
  maxAttempts: number
  live: LiveStats
  /** The conversation's prefix key, remembered with the backend that serves it. */
  prefixKey: string | null
  observer?: RelayObserver
}

/**
 * Failover across the ranked candidates. A connection failure, a 5xx or 429 from the backend, or
 * no first event within the deadline moves the request to the next candidate, as long as nothing
 * has reached the client (the relay asks through `next`); a 4xx refusal is the request's own
 * fault and goes back to the client at once. Every outcome feeds the backend's live stats: in
 * flight, time to first token, circuit breaker.
 */
export class UpstreamAttempts {
  #candidates: readonly Candidate[]
  #options: AttemptOptions
  #tried = 0

  constructor(candidates: readonly Candidate[], options: AttemptOptions) {
    this.#candidates = candidates
    this.#options = options
  }

  /** Opens the first candidate that accepts the request; throws the last failure if none does. */
  async first(): Promise<Attempt> {
    return this.#openNext(null)
  }

  /**
   * After `attempt` failed with `error` before any data reached the client: the next accepted
   * attempt, or null when the failure is final (not retryable, or no candidate left).
   */
  async next(attempt: Attempt, error: unknown): Promise<Attempt | null> {
    const failure = attempt.call.failure(error)
    if (!this.#isBackendFailure(attempt.call, failure)) return null
    this.#options.live.of(attempt.backend.id).circuit.failure(Date.now())
    attempt.call.stop('relay_failed')
    if (!this.#hasMore()) return null
    try {
      return await this.#openNext(failure)
    } catch {
      return null
    }
  }

  #hasMore(): boolean {
    return this.#tried < this.#options.maxAttempts && this.#tried < this.#candidates.length
  }

  async #openNext(previous: ApiError | null): Promise<Attempt> {
    let lastError: unknown = previous
    while (this.#hasMore()) {
      const backend = (this.#candidates[this.#tried++] as Candidate).backend
      const call = this.#callFor(backend)
      try {
        const upstream = await openUpstream({ backend, body: this.#options.body, apiKey: this.#options.apiKey, requestId: this.#options.requestId }, call)
        return { backend, call, upstream, reasoningInContent: backend.reasoningParser === 'none' }
      } catch (error) {
        call.end()
        const failure = call.failure(error)
        if (!this.#isBackendFailure(call, failure)) {
          // The backend answered; the request (or the client) is what failed.
          this.#options.live.of(backend.id).circuit.released()
          throw failure
        }
        this.#options.live.of(backend.id).circuit.failure(Date.now())
        lastError = failure
      }
    }
    throw lastError ?? new ApiError(503, 'No backend can take the request.', { code: 'no_backend_available' })
  }

  #callFor(backend: BackendRecord): UpstreamCall {
    const stats = this.#options.live.of(backend.id)
    this.#options.observer?.attemptStarted(backend.id)
    stats.inFlight++
    stats.circuit.attempt(Date.now())
    return new UpstreamCall(this.#options.clientSignal, {
      ...this.#options.timeouts,
      onFirstEvent: (ms) => {
        const now = Date.now()
        stats.observeTtft(ms, now)
        stats.circuit.success(now)
        if (this.#options.prefixKey !== null) this.#options.live.remember(this.#options.prefixKey, backend.id)
      },
      onEnd: () => {
        stats.inFlight--
        // A probe that ended without an answer either way (the client left) frees the half-open slot.
        stats.circuit.released()
      },
    })
  }

  /** Whether the failure says something about the backend (so another one may do better). */
  #isBackendFailure(call: UpstreamCall, failure: ApiError): boolean {
    if (call.stopReason === 'client_gone') return false
    return failure.status >= 500 || failure.status === 429
  }
}

/**
 * A backend's error event that came before any data reached the client: failover may still
 * replace it; if nothing does, the event (`data`, as the backend sent it) ends the stream.
 */
export class ErrorEventBeforeData extends Error {
  readonly error: ApiError
  readonly data: string

  constructor(error: ApiError, data: string) {
    super(error.message)
    this.error = error
    this.data = data
  }
}
