// Circuit breaking per backend, from live traffic in this isolate. A backend that keeps failing is
// taken out of rotation for a cool-down, then tried with one probe request, and put back when the
// probe succeeds.

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
}

export const DEFAULT_CIRCUIT: CircuitOptions = {
  consecutiveFailures: 5,
  failureRate: 0.5,
  minOutcomes: 10,
  windowMs: 30_000,
  cooldownMs: 10_000,
}

export class CircuitBreaker {
  #state: CircuitState = 'closed'
  #openedAt = 0
  #consecutive = 0
  #probeInFlight = false
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

  /** A request is sent: in half-open state it is the probe. */
  attempt(now: number): void {
    if (this.state(now) === 'half_open') this.#probeInFlight = true
  }

  success(now: number): void {
    this.#record(now, false)
    this.#consecutive = 0
    if (this.#state !== 'closed') {
      this.#state = 'closed'
      this.#outcomes = []
    }
    this.#probeInFlight = false
  }

  failure(now: number): void {
    this.#record(now, true)
    this.#consecutive++
    this.#probeInFlight = false
    if (this.#state === 'half_open' || this.#shouldOpen()) {
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
