// Passive health per backend, from live traffic in this isolate, after Envoy's outlier detection:
// a backend that keeps failing is ejected (out of rotation) for a cool-down that grows with each
// ejection; then a health check, never a client's request, decides its return (Envoy's active
// health checking): the request that caused a failure cannot block the recovery, and no client
// request is sent to find out whether a frozen backend came back. Whether an ejection may take a
// backend out of the ranking at all is the fleet's call (select.ts bounds the share ejected at once).
//
// It also tracks what a missed deadline needs to be judged fairly (dispatch/verdict.ts): which
// requests each stage (response headers, first event) has been reached by, by when they were sent.
// A backend that answered a request sent after the one that waits is alive; the wait is that
// request's own.

/** closed: in rotation; open: ejected; checking: the cool-down is over, a health check decides. */
export type CircuitState = 'closed' | 'open' | 'checking'

/** The stages of an upstream request the backend answers in turn. */
export type Stage = 'headers' | 'first_event'

export interface CircuitOptions {
  /** Consecutive failures that eject the backend. */
  consecutiveFailures: number
  /** Failure share (0..1) over the recent window that ejects it, once minOutcomes were seen. */
  failureRate: number
  minOutcomes: number
  windowMs: number
  /** How long the first ejection lasts; the n-th lasts n times this, up to MAX_EJECTION_MULTIPLIER. */
  cooldownMs: number
  /** A request waiting this long for headers, with nothing sent after it answered, makes the backend stalled. */
  stallMs: number
}

/** One request sent to the backend, as its circuit follows it. */
export interface SentRequest {
  /** Its response headers arrived (more than once is fine). */
  answered(): void
  /** It is over, answered or not: an abandoned request leaves the stall watch without counting as an answer. */
  ended(): void
}

export const DEFAULT_CIRCUIT: CircuitOptions = {
  consecutiveFailures: 5,
  failureRate: 0.5,
  minOutcomes: 10,
  windowMs: 30_000,
  cooldownMs: 10_000,
  stallMs: 1_000,
}

/**
 * Envoy multiplies its base ejection time by the number of ejections; capped here at 3 cool-downs
 * (30 s by default), so a backend that was really broken is retried twice a minute, not less.
 */
export const MAX_EJECTION_MULTIPLIER = 3

/** A return check whose answer has not come in this long is given up and started again (a check takes at most seconds). */
const CHECK_GIVE_UP_MS = 10_000

export class CircuitBreaker {
  #ejectedUntil = 0
  /** Since the last ejection, a health check answered (or there was none): back in rotation. */
  #confirmed = true
  /** When the running health check started; 0: none. */
  #checkingSince = 0
  /** Ejections in a row (the multiplier); back to 0 after a cool-down of good behaviour. */
  #ejections = 0
  #returnedAt = 0
  #consecutive = 0
  /** Requests sent and not yet answered with headers, oldest first (a Set keeps insertion order). */
  #unanswered = new Set<{ since: number }>()
  /** Per stage, when the most recently sent request that reached it was sent. */
  #reachedBySentAt: Record<Stage, number> = { headers: 0, first_event: 0 }
  /** Per stage, when a request (any, however old) last reached it. */
  #lastReachedAt: Record<Stage, number> = { headers: 0, first_event: 0 }
  /** Recent outcomes, oldest first: time and whether it failed. */
  #outcomes: { at: number; failed: boolean }[] = []
  readonly #options: CircuitOptions

  constructor(options: CircuitOptions = DEFAULT_CIRCUIT) {
    this.#options = options
  }

  state(now: number): CircuitState {
    if (now < this.#ejectedUntil) return 'open'
    return this.#confirmed ? 'closed' : 'checking'
  }

  /**
   * Whether the cool-down is over and a health check should now decide the return: none running,
   * or one whose answer never came (its request context ended first), which must not keep the
   * backend out for good.
   */
  needsCheck(now: number): boolean {
    return this.state(now) === 'checking' && (this.#checkingSince === 0 || now - this.#checkingSince >= CHECK_GIVE_UP_MS)
  }

  /** A health check of the ejected backend started. */
  checkStarted(now: number): void {
    this.#checkingSince = now
  }

  /** Its answer: healthy, back in rotation; not, ejected again (for longer). */
  checked(healthy: boolean, now: number): void {
    this.#checkingSince = 0
    if (this.state(now) !== 'checking') return
    if (healthy) this.#confirmed = true
    else this.eject(now)
  }

  /** Whether the backend is in rotation now (not ejected). */
  allows(now: number): boolean {
    return this.state(now) === 'closed'
  }

  /** A request is sent at `now`: it is followed until it is answered or ends (see SentRequest). */
  attempt(now: number): SentRequest {
    const sent = { since: now }
    this.#unanswered.add(sent)
    return {
      answered: () => {
        if (this.#unanswered.delete(sent)) this.reached('headers', sent.since)
      },
      ended: () => void this.#unanswered.delete(sent),
    }
  }

  /** The request sent at `sentAt` reached `stage` (its headers, its first event), at `now`. */
  reached(stage: Stage, sentAt: number, now = Date.now()): void {
    this.#reachedBySentAt[stage] = Math.max(this.#reachedBySentAt[stage], sentAt)
    this.#lastReachedAt[stage] = Math.max(this.#lastReachedAt[stage], now)
  }

  /**
   * Whether any request, an older one included, reached `stage` after `at`: the backend is working
   * through what it was sent (vLLM answers in arrival order), busy rather than frozen.
   */
  reachedSince(stage: Stage, at: number): boolean {
    return this.#lastReachedAt[stage] > at
  }

  /** Whether a request sent after `sentAt` reached `stage`: the backend was moving past the one sent then. */
  reachedAfter(stage: Stage, sentAt: number): boolean {
    return this.#reachedBySentAt[stage] > sentAt
  }

  /**
   * The backend is stalled when a request has waited for headers longer than stallMs and no
   * request sent after it has been answered: vLLM answers headers once it has rendered and
   * tokenized a prompt, in milliseconds for ordinary prompts, so a backend that answers nothing
   * newer is frozen, lost or lagging for everyone. One that answers newer requests is alive, and the
   * old one is slow for its own reasons (a huge prompt). New requests try a stalled backend only
   * after every other one. The newest request past stallMs decides: an answer after it clears
   * every older one too.
   */
  stalled(now: number): boolean {
    let newestOverdue: number | null = null
    for (const sent of this.#unanswered) {
      if (now - sent.since < this.#options.stallMs) break
      newestOverdue = sent.since
    }
    return newestOverdue !== null && !this.reachedAfter('headers', newestOverdue)
  }

  success(now: number): void {
    this.#record(now, false)
    this.#consecutive = 0
    // A cool-down of good behaviour after its return resets the multiplier.
    if (this.#ejections > 0 && now - this.#returnedAt >= this.#options.cooldownMs) this.#ejections = 0
  }

  /**
   * A backend failure: unreachable, a 5xx or 429, an error event before data. Ejects it after
   * consecutiveFailures in a row, or a failure share of failureRate over the window.
   */
  failure(now: number): void {
    this.#record(now, true)
    this.#consecutive++
    if (this.state(now) === 'closed' && this.#shouldEject()) this.eject(now)
  }

  /**
   * Out of rotation now: a missed deadline that the verdict laid on the backend (it answered
   * neither a newer request nor its health check), or the failure rules above.
   */
  eject(now: number): void {
    if (this.state(now) === 'open') return
    this.#ejections = Math.min(this.#ejections + 1, MAX_EJECTION_MULTIPLIER)
    this.#ejectedUntil = now + this.#ejectionMs()
    this.#returnedAt = this.#ejectedUntil
    this.#confirmed = false
    this.#consecutive = 0
    this.#outcomes = []
  }

  #ejectionMs(): number {
    return this.#options.cooldownMs * Math.max(1, this.#ejections)
  }

  #shouldEject(): boolean {
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
