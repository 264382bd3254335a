// Hedged first tokens: when the chosen backend has sent no data event by a deadline taken from its
// recent TTFT, a second backend is asked too and the first to answer wins (see hedge-race.ts for
// the race, docs/fleet.md for the policy). This file holds what decides whether and when to hedge.
import type { GatewayConfig, HedgeConfig } from '../config.ts'
import type { BackendLiveStats } from '../fleet/live-stats.ts'

/** Which attempt of a hedged request sent the first data event. */
export type HedgeWinner = 'primary' | 'hedge'

/** Why a hedge starts: the deadline passed, or the primary's backend is known to have queued it. */
export type HedgeReason = 'deadline' | 'queued'

/** What the engine needs to hedge a source: when, how to start the hedge, and what to tell. */
export interface HedgePlan<S> {
  /** How long `source` may go without a data event before the hedge starts. */
  delayMs(source: S): number
  /** Resolves true when `source` is known to wait in its backend's queue: the hedge need not wait for the deadline. */
  queued?(source: S): Promise<boolean>
  /** Opens the hedge: another accepted source, or null when none may start now (cap, saturation, none left). */
  start(reason: HedgeReason): Promise<S | null>
  /** A raced source that failed while the other runs on: its backend's failure, not the request's. */
  dropped(source: S, error: unknown): void
  /** The race is decided: `winner` sent the first data event (the loser is already stopped). */
  won(winner: S, by: HedgeWinner): void
}

/** Recent first-token samples a backend needs before its percentile sets a deadline. */
export const MIN_SAMPLES = 4

/**
 * The deadline: the recent TTFT at the configured percentile of the chosen backend or of the
 * hedge's backend, whichever is lower, within the bounds. The hedge's own percentile matters: a
 * backend that is always slow (a straggler) would otherwise never be hedged, its percentile being
 * its usual slowness; waiting longer than the alternative usually takes buys nothing. A backend
 * with fewer than MIN_SAMPLES samples says nothing; with neither saying anything, the max bound.
 */
export function hedgeDelayMs(backends: readonly BackendLiveStats[], config: HedgeConfig, now: number): number {
  let delay = config.maxDelayMs
  for (const stats of backends) {
    const quantile = stats.ttftSamples(now) >= MIN_SAMPLES ? stats.ttftQuantileMs(config.percentile / 100, now) : null
    if (quantile !== null) delay = Math.min(delay, quantile)
  }
  return Math.max(config.minDelayMs, delay)
}

/** The cap's sliding window: BUCKETS buckets of BUCKET_MS each. */
const BUCKET_MS = 5_000
const BUCKETS = 12

/**
 * Hedges are capped as a share of the isolate's requests over the last minute: a hedge doubles a
 * request's cost on the GPUs until the race is decided, so under a broad slowdown (when every
 * request would hedge) the cap keeps the extra load small. Per isolate, like the live stats.
 */
export class HedgeBudget {
  #maxShare: number
  #requests = new Array<number>(BUCKETS).fill(0)
  #hedges = new Array<number>(BUCKETS).fill(0)
  #bucket = 0
  #bucketStart = 0

  constructor(maxShare: number) {
    this.#maxShare = maxShare
  }

  /** A request that may be hedged was started. */
  request(now: number): void {
    this.#advance(now)
    this.#requests[this.#bucket] = (this.#requests[this.#bucket] ?? 0) + 1
  }

  /** Takes one hedge from the budget if the cap allows it. */
  tryHedge(now: number): boolean {
    this.#advance(now)
    const requests = sum(this.#requests)
    if (sum(this.#hedges) + 1 > this.#maxShare * requests) return false
    this.#hedges[this.#bucket] = (this.#hedges[this.#bucket] ?? 0) + 1
    return true
  }

  /** Moves the window to `now`, emptying the buckets that fell out of it. */
  #advance(now: number): void {
    if (this.#bucketStart === 0) this.#bucketStart = now
    const steps = Math.min(BUCKETS, Math.floor((now - this.#bucketStart) / BUCKET_MS))
    for (let i = 0; i < steps; i++) {
      this.#bucket = (this.#bucket + 1) % BUCKETS
      this.#requests[this.#bucket] = 0
      this.#hedges[this.#bucket] = 0
    }
    if (steps > 0) this.#bucketStart = now - ((now - this.#bucketStart) % BUCKET_MS)
  }
}

function sum(values: readonly number[]): number {
  let total = 0
  for (const value of values) total += value
  return total
}

const budgets = new WeakMap<GatewayConfig, HedgeBudget>()

/** The isolate's hedge budget; one per configuration, as with liveStatsFor. */
export function hedgeBudgetFor(config: GatewayConfig): HedgeBudget {
  let budget = budgets.get(config)
  if (!budget) {
    budget = new HedgeBudget(config.fleet.hedge.maxShare)
    budgets.set(config, budget)
  }
  return budget
}
