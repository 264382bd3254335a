// One key's rate-limit state: a sliding one-minute log of admitted requests and of the tokens
// charged to them, and the leases of requests still in flight. Pure and synchronous: the Durable
// Object that owns it (src/durable/key-limiter.ts) serializes every call, which is what makes the
// limits exact under any concurrency.
//
// Why a log and not a token bucket: "N per minute" then means what it says, in every 60-second
// window. A bucket lets a burst of N follow a minute of refill, so 2N can pass in one minute.
//
// It also pauses a key whose requests keep ending with `request_too_slow` (src/limits/pause.ts),
// holds the key's token budgets per UTC day and month with its usage per day (src/limits/budget.ts),
// and its settled tokens per hour for the spike rule (src/limits/usage-spike.ts).

import type { EndReason } from '../ending.ts'
import { budgetStates, spentBudget, UsageDays, type BudgetLimits, type DayUsage, type UsageDayStore } from './budget.ts'
import type { BudgetState, SpikeState, UsageDay } from './key-report.ts'
import { SLOW_STRIKES, SlowRequests, type SlowState } from './pause.ts'
import { HourlyTokens, spikeState, type HourlyStore } from './usage-spike.ts'

export const WINDOW_MS = 60_000

export interface EffectiveLimits {
  requestsPerMinute: number
  tokensPerMinute: number
  concurrentStreams: number
  /** Concurrent streams of one client IP on this key (browser callers); null: not applied. */
  concurrentStreamsPerIp: number | null
  /**
   * Token budgets (prompt plus output) per UTC day and per calendar month (UTC), src/limits/budget.ts;
   * null or absent: none. Absent too from an isolate older than budgets.
   */
  budgetDay?: number | null
  budgetMonth?: number | null
}

/**
 * slow_requests: the key is paused because its requests kept ending with `request_too_slow`.
 * budget_day, budget_month: the key's token budget of the period is spent.
 */
export type LimitName =
  'requests' | 'tokens' | 'concurrent_streams' | 'concurrent_streams_per_ip' | 'slow_requests' | 'budget_day' | 'budget_month'

export interface AdmitInput {
  leaseId: string
  /** Estimated prompt tokens plus the most output tokens the request may produce. */
  reserveTokens: number
  limits: EffectiveLimits
  /** The browser client's IP when the per-IP limit applies, else null. */
  clientIp: string | null
  /**
   * The key's id, for the limiter's reports to the board (src/limits/key-report.ts); the ledger
   * does not read it. Absent from an isolate older than the reports.
   */
  keyId?: string
}

export interface TokenUse {
  promptTokens: number
  completionTokens: number
}

/** What the rate-limit headers report, after the decision. */
export interface LimitView {
  requests: { limit: number; remaining: number; resetMs: number }
  tokens: { limit: number; remaining: number; resetMs: number }
  /**
   * Stream slots free after the decision. Optional: an object still running an older version
   * during a rollout answers without it (the isolate then does not admit speculatively).
   */
  streams?: { limit: number; remaining: number }
  /**
   * The key may be paused soon (src/limits/pause.ts): it has a `request_too_slow` ending counting
   * toward a pause, or it was paused within PAUSE_RESET_MS. Not for the headers: the isolate does
   * not admit such a key's requests speculatively. Optional as `streams` is: an object that does
   * not send it never pauses.
   */
  mayPause?: boolean
  /**
   * The key's budgets after the decision (month first), only when it has one: limit, used (settled
   * plus reservations in flight), remaining, reset. For the x-budget-* headers, and the isolate
   * does not speculate past them (src/limits/headroom.ts).
   */
  budgets?: BudgetState[]
}

export type Decision =
  | { admitted: true; view: LimitView }
  | { admitted: false; limit: LimitName; limitValue: number; used: number; requested: number; retryAfterMs: number; view: LimitView }

export interface UsageTotals {
  admitted: number
  refused: Record<LimitName, number>
  promptTokens: number
  completionTokens: number
  /** Leases dropped because their Worker never settled them (it crashed); see LEASE_MAX_MS. */
  expiredLeases: number
}

export interface Charge {
  /** The lease (request) it belongs to. */
  id: string
  at: number
  tokens: number
}

export interface Lease {
  at: number
  ip: string | null
  charge: Charge
  /** Tokens reserved at admission: what the lease holds of its period's budgets until it settles. */
  reserve: number
}

/**
 * Where the ledger's changes go: the Durable Object's storage, one record per charge and lease,
 * so a change costs one small write however long the window is. The usage rows per day and hour
 * are optional: a store without them keeps them in memory only.
 */
export interface LedgerStore extends Partial<UsageDayStore & HourlyStore> {
  saveCharge(charge: Charge): void
  dropCharge(charge: Charge): void
  saveLease(id: string, lease: Lease): void
  dropLease(id: string): void
  saveTotals(totals: UsageTotals): void
  saveSlow(state: SlowState): void
}

export interface LedgerState {
  /** Oldest first. */
  charges: Charge[]
  leases: Map<string, Lease>
  totals: UsageTotals
  slow: SlowState
  /** Settled usage per UTC day number (src/limits/budget.ts). */
  days: ReadonlyMap<number, DayUsage>
  /** Settled tokens per UTC hour number, and the hour of the first (src/limits/usage-spike.ts). */
  hours: ReadonlyMap<number, number>
  firstHour: number | null
}

/** A key's status: the limiter's `status`, and the key CLI's `usage` through the Worker. */
export interface LedgerStatus {
  inFlight: number
  view: LimitView
  totals: UsageTotals
  /** The key's budgets now (month first); empty without one. */
  budgets: BudgetState[]
  spike: SpikeState
}

/**
 * A lease older than this is assumed lost (the Worker holding it died without settling) and its
 * slot is freed. Long enough for any real stream: 4096 tokens at 10 tokens/s is under 7 minutes.
 */
export const LEASE_MAX_MS = 15 * 60_000

/** How long a refused concurrent stream should wait: nobody can know when a stream will end. */
const CONCURRENCY_RETRY_MS = 1_000

type Refusal = Omit<Extract<Decision, { admitted: false }>, 'admitted' | 'view'>

export class Ledger {
  // One charge per admitted request, in admission order: the request log and the token log at once.
  #charges: Charge[]
  #leases: Map<string, Lease>
  #totals: UsageTotals
  #tokensInWindow = 0
  #slow: SlowRequests
  #days: UsageDays
  #hours: HourlyTokens
  #store: LedgerStore | null

  constructor(state: Partial<LedgerState> = {}, store: LedgerStore | null = null) {
    this.#charges = state.charges ?? []
    this.#leases = state.leases ?? new Map()
    const totals = emptyTotals()
    // Stored totals from before a refusal kind existed lack its count.
    this.#totals = { ...totals, ...state.totals, refused: { ...totals.refused, ...state.totals?.refused } }
    this.#slow = new SlowRequests(state.slow)
    for (const charge of this.#charges) this.#tokensInWindow += charge.tokens
    this.#store = store
    this.#days = new UsageDays(state.days, {
      saveDay: (date, usage) => store?.saveDay?.(date, usage),
      dropDay: (date) => store?.dropDay?.(date),
    })
    this.#hours = new HourlyTokens(
      { ...(state.hours ? { hours: state.hours } : {}), firstHour: state.firstHour ?? null },
      {
        saveHour: (hour, tokens) => store?.saveHour?.(hour, tokens),
        dropHour: (hour) => store?.dropHour?.(hour),
        saveFirstHour: (hour) => store?.saveFirstHour?.(hour),
      },
    )
  }

  /** Admits the request and reserves its tokens and a stream slot, or says which limit refuses it. */
  admit(input: AdmitInput, now: number): Decision {
    this.#expire(now)
    const { limits, reserveTokens, clientIp, leaseId } = input
    const refusal = this.#refusal(input, now)
    if (refusal) {
      this.#totals.refused[refusal.limit]++
      this.#store?.saveTotals(this.#totals)
      return { admitted: false, ...refusal, view: this.#view(limits, now) }
    }
    const charge: Charge = { id: leaseId, at: now, tokens: reserveTokens }
    const lease: Lease = { at: now, ip: clientIp, charge, reserve: reserveTokens }
    this.#charges.push(charge)
    this.#tokensInWindow += reserveTokens
    this.#leases.set(leaseId, lease)
    this.#totals.admitted++
    this.#store?.saveCharge(charge)
    this.#store?.saveLease(leaseId, lease)
    this.#store?.saveTotals(this.#totals)
    return { admitted: true, view: this.#view(limits, now) }
  }

  /**
   * Ends a lease: frees its slot and replaces its token reservation with what the request really
   * used, in the window and in the budgets of the day and month it was admitted in (its day's
   * usage row); `reason` (why it ended) counts toward a pause for slow requests. Idempotent: a
   * lease settled twice (or unknown) changes nothing.
   */
  settle(leaseId: string, used: TokenUse, now: number, reason: EndReason | null = null): boolean {
    const lease = this.#leases.get(leaseId)
    if (!lease) return false
    this.#expire(now)
    this.#leases.delete(leaseId)
    this.#store?.dropLease(leaseId)
    if (this.#slow.ended(reason, lease.at, now)) this.#store?.saveSlow(this.#slow.snapshot())
    const tokens = used.promptTokens + used.completionTokens
    // A charge that has left the window no longer limits anything.
    if (lease.charge.at > now - WINDOW_MS) {
      this.#tokensInWindow += tokens - lease.charge.tokens
      lease.charge.tokens = tokens
      this.#store?.saveCharge(lease.charge)
    }
    this.#totals.promptTokens += used.promptTokens
    this.#totals.completionTokens += used.completionTokens
    this.#store?.saveTotals(this.#totals)
    this.#days.add(lease.at, used)
    this.#hours.add(tokens, now)
    return true
  }

  status(limits: EffectiveLimits, now: number): LedgerStatus {
    this.#expire(now)
    return {
      inFlight: this.#leases.size,
      view: this.#view(limits, now),
      totals: structuredClone(this.#totals),
      budgets: this.#budgets(limits, now),
      spike: this.spike(now),
    }
  }

  /** The key's settled usage per UTC day, the last `days` days, oldest first; days without use left out. */
  usageHistory(days: number, now: number): UsageDay[] {
    return this.#days.history(days, now)
  }

  /** The spike rule on the key's hourly tokens (src/limits/usage-spike.ts). */
  spike(now: number): SpikeState {
    return spikeState(this.#hours, now)
  }

  /** The key's budgets now (month first); empty without one. */
  budgets(limits: EffectiveLimits, now: number): BudgetState[] {
    this.#expire(now)
    return this.#budgets(limits, now)
  }

  #budgets(limits: EffectiveLimits, now: number): BudgetState[] {
    const budgets: BudgetLimits = { day: limits.budgetDay ?? null, month: limits.budgetMonth ?? null }
    if (budgets.day === null && budgets.month === null) return []
    return budgetStates(budgets, this.#days, this.#leases.values(), now)
  }

  #refusal(input: AdmitInput, now: number): Refusal | null {
    const { limits, reserveTokens, clientIp } = input
    // A spent budget first: nothing else can admit the request before the period ends, and its
    // Retry-After (the period's end) is the longest any refusal could say. Month before day.
    const spent = spentBudget(this.#budgets(limits, now))
    if (spent) {
      const limit = spent.period === 'day' ? 'budget_day' : 'budget_month'
      return { limit, limitValue: spent.limit, used: spent.used, requested: reserveTokens, retryAfterMs: spent.resetsAt - now }
    }
    // Then: while paused, nothing of the key may reach a backend, whatever its other limits.
    const pausedMs = this.#slow.remainingMs(now)
    if (pausedMs > 0) return { limit: 'slow_requests', limitValue: SLOW_STRIKES, used: SLOW_STRIKES, requested: 1, retryAfterMs: pausedMs }
    if (this.#leases.size >= limits.concurrentStreams) {
      return concurrencyRefusal('concurrent_streams', limits.concurrentStreams, this.#leases.size)
    }
    if (clientIp !== null && limits.concurrentStreamsPerIp !== null) {
      const used = this.#streamsOf(clientIp)
      if (used >= limits.concurrentStreamsPerIp) return concurrencyRefusal('concurrent_streams_per_ip', limits.concurrentStreamsPerIp, used)
    }
    const requests = this.#charges.length
    if (requests >= limits.requestsPerMinute) {
      // The oldest admissions leave the window first; wait until enough of them have gone.
      const freedAt = (this.#charges[requests - limits.requestsPerMinute]?.at ?? now) + WINDOW_MS
      return { limit: 'requests', limitValue: limits.requestsPerMinute, used: requests, requested: 1, retryAfterMs: freedAt - now }
    }
    if (this.#tokensInWindow + reserveTokens > limits.tokensPerMinute) {
      const freedAt = this.#tokensFreeAt(limits.tokensPerMinute - reserveTokens, now)
      return {
        limit: 'tokens',
        limitValue: limits.tokensPerMinute,
        used: this.#tokensInWindow,
        requested: reserveTokens,
        retryAfterMs: freedAt - now,
      }
    }
    return null
  }

  /** When the window's charges will have fallen to `target` or below (Infinity: never). */
  #tokensFreeAt(target: number, now: number): number {
    if (target < 0) return Number.POSITIVE_INFINITY
    let remaining = this.#tokensInWindow
    for (const charge of this.#charges) {
      if (remaining <= target) break
      remaining -= charge.tokens
      if (remaining <= target) return charge.at + WINDOW_MS
    }
    return now
  }

  #streamsOf(ip: string): number {
    let count = 0
    for (const lease of this.#leases.values()) if (lease.ip === ip) count++
    return count
  }

  #view(limits: EffectiveLimits, now: number): LimitView {
    // The window is back to its initial state when its newest charge leaves it.
    const resetMs = this.#charges.length === 0 ? 0 : (this.#charges.at(-1)?.at ?? now) + WINDOW_MS - now
    const budgets = this.#budgets(limits, now)
    return {
      requests: { limit: limits.requestsPerMinute, remaining: Math.max(0, limits.requestsPerMinute - this.#charges.length), resetMs },
      tokens: { limit: limits.tokensPerMinute, remaining: Math.max(0, limits.tokensPerMinute - this.#tokensInWindow), resetMs },
      streams: { limit: limits.concurrentStreams, remaining: Math.max(0, limits.concurrentStreams - this.#leases.size) },
      mayPause: this.#slow.mayPause(now),
      ...(budgets.length > 0 ? { budgets } : {}),
    }
  }

  /** Drops what has left the window, and leases whose Worker must have died. */
  #expire(now: number): void {
    const cutoff = now - WINDOW_MS
    let drop = 0
    for (const charge of this.#charges) {
      if (charge.at > cutoff) break
      this.#tokensInWindow -= charge.tokens
      this.#store?.dropCharge(charge)
      drop++
    }
    if (drop > 0) this.#charges.splice(0, drop)
    for (const [id, lease] of this.#leases) {
      if (lease.at > now - LEASE_MAX_MS) continue
      this.#leases.delete(id)
      this.#store?.dropLease(id)
      this.#totals.expiredLeases++
      this.#store?.saveTotals(this.#totals)
    }
  }
}

function concurrencyRefusal(limit: LimitName, limitValue: number, used: number): Refusal {
  return { limit, limitValue, used, requested: 1, retryAfterMs: CONCURRENCY_RETRY_MS }
}

function emptyTotals(): UsageTotals {
  return {
    admitted: 0,
    refused: {
      requests: 0,
      tokens: 0,
      concurrent_streams: 0,
      concurrent_streams_per_ip: 0,
      slow_requests: 0,
      budget_day: 0,
      budget_month: 0,
    },
    promptTokens: 0,
    completionTokens: 0,
    expiredLeases: 0,
  }
}
