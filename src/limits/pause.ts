// A key's pause for slow requests: part of its ledger (src/limits/ledger.ts), so one Durable
// Object decides it for every isolate. A request that ends with `request_too_slow` missed a
// backend's response-headers deadline while that backend kept answering others (or missed it on
// two backends): its own preprocessing is slow (a huge or hostile chat template, a prompt of
// thousands of tokens). vLLM renders and tokenizes a prompt on its API server's event loop, so
// while one such request is there, every other request on that backend waits for its headers. The
// verdict spares the backends; this pause spares the other keys (docs/rate-limits.md).

import type { EndReason } from '../ending.ts'

/** One slow request can be bad luck (a long prompt, a busy backend); two within a minute are a pattern. */
export const SLOW_STRIKES = 2
export const SLOW_WINDOW_MS = 60_000
/**
 * The first pause: the gateway's ejection cool-down (CIRCUIT_COOLDOWN_MS, 10 s), the same scale of
 * "stay away a while, then try again". Long enough to take a poison client sending at its limits
 * off the backends for a while; short enough that a client who sent one unlucky pair barely notices.
 */
export const PAUSE_MS = 10_000
/**
 * A pause that begins within this long of the previous one's end is twice as long: the key went
 * on as before. Five minutes is many pauses' worth, so a client that retries on Retry-After with
 * the same prompts keeps doubling; one that behaved that long starts again from PAUSE_MS.
 */
export const PAUSE_RESET_MS = 5 * 60_000
/**
 * The longest pause: as long as the requests-per-minute window, so at the cap a key that keeps on
 * gets about one concurrency limit's worth of requests to the backends a minute (instead of its
 * whole RPM), while a client that fixed its prompts is never locked out for more than a minute.
 */
export const PAUSE_MAX_MS = 60_000

/** The last pause of the key, kept after its end to double the next one. */
export interface Pause {
  from: number
  until: number
}

/** What the ledger stores of it (one record). */
export interface SlowState {
  /** When each `request_too_slow` counted toward the next pause ended, oldest first. */
  strikes: number[]
  pause: Pause | null
}

export function emptySlowState(): SlowState {
  return { strikes: [], pause: null }
}

export class SlowRequests {
  #state: SlowState

  constructor(state: SlowState = emptySlowState()) {
    this.#state = { strikes: [...state.strikes], pause: state.pause ? { ...state.pause } : null }
  }

  /** How much longer the key is paused: 0 when it is not. */
  remainingMs(now: number): number {
    const pause = this.#state.pause
    return pause && now < pause.until ? pause.until - now : 0
  }

  /**
   * Whether a pause may come soon: a slow ending counts toward the next one, or the key is paused
   * or was within PAUSE_RESET_MS (its next pause would double).
   */
  mayPause(now: number): boolean {
    const { strikes, pause } = this.#state
    return strikes.some((at) => at > now - SLOW_WINDOW_MS) || (pause !== null && now - pause.until <= PAUSE_RESET_MS)
  }

  /**
   * Counts an ending of a request admitted at `admittedAt`; true when the state changed (to be
   * stored). Only `request_too_slow` counts, and only for a request admitted after the last pause
   * began: the requests already in flight then were what caused it, and must not prolong it.
   */
  ended(reason: EndReason | null, admittedAt: number, now: number): boolean {
    if (reason !== 'request_too_slow') return false
    const last = this.#state.pause
    if (last && admittedAt < last.from) return false
    const strikes = [...this.#state.strikes.filter((at) => at > now - SLOW_WINDOW_MS), now]
    if (strikes.length < SLOW_STRIKES) {
      this.#state.strikes = strikes
      return true
    }
    this.#state = { strikes: [], pause: { from: now, until: now + nextPauseMs(last, now) } }
    return true
  }

  snapshot(): SlowState {
    return structuredClone(this.#state)
  }
}

/** PAUSE_MS, doubled for each pause that follows the previous one within PAUSE_RESET_MS, up to PAUSE_MAX_MS. */
function nextPauseMs(last: Pause | null, now: number): number {
  if (!last || now - last.until > PAUSE_RESET_MS) return PAUSE_MS
  return Math.min(2 * (last.until - last.from), PAUSE_MAX_MS)
}
