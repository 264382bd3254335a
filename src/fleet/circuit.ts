// Circuit breaking per backend, from live traffic in this isolate. A backend that keeps failing is
// taken out of rotation for a cool-down, then tried with one probe request, and put back when the
// probe succeeds. Missed deadlines (no response headers, no first event) weigh more than fast
// errors: each cost its request seconds, so a few in a row open the circuit. A backend holding a
// request unanswered for longer than a healthy one ever takes is "stalled": tried after the others.

export type CircuitState = 'closed' | 'open' | 'half_open'

export interface CircuitOptions {
  /** Consecutive failures that open the circuit. */
  consecutiveFailures: number
  /** Failure share (0..1) over the recent window that opens it, once minOutcomes were seen. */
  failureRate: number
  minOutcomes: number
  windowMs: number
  /** Time an open circuit waits before it lets one probe through. */
  cooldownMs: number
  /** Consecutive missed deadlines (headers, first event) that open the circuit. */
  consecutiveTimeouts: number
  /** A request without response headers for this long makes the backend stalled (see stalled). */
  stallMs: number
}

export const DEFAULT_CIRCUIT: CircuitOptions = {
  consecutiveFailures: 5,
  failureRate: 0.5,
  minOutcomes: 10,
  windowMs: 30_000,
  cooldownMs: 10_000,
  consecutiveTimeouts: 2,
  stallMs: 1_000,
}

export class CircuitBreaker {
  #state: CircuitState = 'closed'
  #openedAt = 0
  #consecutive = 0
  #consecutiveTimeouts = 0
  #probeInFlight = false
  /** Requests sent and not yet answered with headers, oldest first (a Set keeps insertion order). */
  #unanswered = new Set<{ since: number }>()
  /** Recent outcomes, oldest first: time and whether it failed. */
  #outcomes: { at: number; failed: boolean }[] = []
  readonly #options: CircuitOptions

  constructor(options: CircuitOptions = DEFAULT_CIRCUIT) {
    this.#options = options
  }

  state(now: number): CircuitState {
    if (this.#state === 'open' && now - this.#openedAt >= this.#options.cooldownMs) this.#state = 'half_open'
    return this.#state
  }

  /** Whether a request may go to this backend now (a half-open circuit takes one probe at a time). */
  allows(now: number): boolean {
    const state = this.state(now)
    return state === 'closed' || (state === 'half_open' && !this.#probeInFlight)
  }

  /**
   * A request is sent: in half-open state it is the probe. Returns what to call when its response
   * headers arrive or it ends (either is fine, and more than once).
   */
  attempt(now: number): () => void {
    if (this.state(now) === 'half_open') this.#probeInFlight = true
    const sent = { since: now }
    this.#unanswered.add(sent)
    return () => this.#unanswered.delete(sent)
  }

  /**
   * Whether a request sent here has been waiting for response headers longer than stallMs: vLLM
   * sends them before queueing, in milliseconds, so a backend that sits on one is frozen or lost.
   * New requests try it only after every other backend, long before its deadline fails the request.
   */
  stalled(now: number): boolean {
    for (const sent of this.#unanswered) return now - sent.since >= this.#options.stallMs
    return false
  }

  success(now: number): void {
    this.#record(now, false)
    this.#consecutive = 0
    this.#consecutiveTimeouts = 0
    if (this.#state !== 'closed') {
      this.#state = 'closed'
      this.#outcomes = []
    }
    this.#probeInFlight = false
  }

  /** A backend failure; `missedDeadline`: it sent no headers or no first event in time. */
  failure(now: number, missedDeadline = false): void {
    this.#record(now, true)
    this.#consecutive++
    this.#consecutiveTimeouts = missedDeadline ? this.#consecutiveTimeouts + 1 : 0
    this.#probeInFlight = false
    if (this.#state === 'half_open' || this.#consecutiveTimeouts >= this.#options.consecutiveTimeouts || this.#shouldOpen()) {
      this.#state = 'open'
      this.#openedAt = now
    }
  }

  /** The request ended without telling anything about the backend (the client left). */
  released(): void {
    this.#probeInFlight = false
  }

  #shouldOpen(): boolean {
    const { consecutiveFailures, failureRate, minOutcomes } = this.#options
    if (this.#consecutive >= consecutiveFailures) return true
    if (this.#outcomes.length < minOutcomes) return false
    const failed = this.#outcomes.filter((outcome) => outcome.failed).length
    return failed / this.#outcomes.length >= failureRate
  }

  #record(now: number, failed: boolean): void {
    this.#outcomes.push({ at: now, failed })
    const cutoff = now - this.#options.windowMs
    while ((this.#outcomes[0]?.at ?? now) < cutoff) this.#outcomes.shift()
  }
}
