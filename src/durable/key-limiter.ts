import { DurableObject } from 'cloudflare:workers'
import type { EndReason } from '../ending.ts'
import type { WorkerEnv } from '../env.ts'
import { dayOfDate, type DayUsage } from '../limits/budget.ts'
import { reportDelay, reportedState, type ReportedState } from '../limits/budget-report.ts'
import type { KeyReport, UsageDay } from '../limits/key-report.ts'
import {
  Ledger,
  type AdmitInput,
  type Charge,
  type Decision,
  type EffectiveLimits,
  type Lease,
  type LedgerStatus,
  type LedgerStore,
  type LimitView,
  type TokenUse,
  type UsageTotals,
} from '../limits/ledger.ts'
import type { SlowState } from '../limits/pause.ts'

/** The limiter's answer: the ledger's decision, or a refusal because the key was revoked. */
export type LimiterDecision = Decision | { admitted: false; revoked: true; view: LimitView }

export interface LimiterStatus extends LedgerStatus {
  revoked: boolean
}

/**
 * One API key's rate limits: requests and tokens per minute, and concurrent streams. One instance
 * per key (named by the key id). A Durable Object runs one call at a time, so the Ledger inside is
 * exact however many Workers ask at once, its pause for slow requests included. Each call's changes
 * go to the object's SQLite-backed storage in one batch, so a restarted object resumes with its
 * window, its in-flight leases and its pause.
 *
 * Changes are written at most every FLUSH_MS, in one batch, not on every call: a storage commit per
 * call (and the output gate holding each answer until it is durable) cost about 1 ms per request,
 * and tens of ms at 64 concurrent requests of one key, as answers queued behind commits
 * (docs/benchmarks.md). Decisions never wait for storage and stay exact; what a crash of the object
 * can lose is its last FLUSH_MS of changes, after which it resumes from the previous state.
 *
 * The key's token budgets per day and month ride on the same admit call (src/limits/budget.ts),
 * and its usage per UTC day (the history, `usageHistory`) and per hour (the spike rule,
 * src/limits/usage-spike.ts) go to storage in the same batches. After a flush it may report the
 * key's budgets and spike state to the board in the telemetry aggregator, fire and forget, at most
 * as often as src/limits/budget-report.ts allows: never on the answer's path.
 */
export class KeyLimiter extends DurableObject<WorkerEnv> {
  #ledger: Ledger
  #pending = new Map<string, unknown>()
  #flushTimer: ReturnType<typeof setTimeout> | null = null
  #revoked: boolean
  /** The key's id and limits as the last admit (or status) gave them: what a report is made of. */
  #keyId: string | null = null
  #limits: EffectiveLimits | null = null
  #reported: ReportedState | null = null
  #reportTimer: ReturnType<typeof setTimeout> | null = null

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    this.#ledger = new Ledger(loadState(ctx.storage.kv), batchingStore(this.#pending))
    this.#revoked = ctx.storage.kv.get<boolean>(REVOKED) === true
  }

  admit(input: AdmitInput): LimiterDecision {
    // Every request of the key asks here first, so a revocation stops the next one, in seconds,
    // where the key record in KV reaches each isolate only after its cache TTL and KV's propagation.
    if (this.#revoked) return { admitted: false, revoked: true, view: this.#ledger.status(input.limits, Date.now()).view }
    this.#limits = input.limits
    if (input.keyId !== undefined) this.#keyId = input.keyId
    const decision = this.#ledger.admit(input, Date.now())
    this.#write()
    return decision
  }

  /**
   * Marks the key revoked (the key CLI's revoke, through POST /v1/keys/:id/revoke). Written at
   * once, not batched: rare, and it must survive a restart of the object. In-flight streams finish.
   */
  revoke(): boolean {
    const was = this.#revoked
    this.#revoked = true
    this.ctx.storage.kv.put(REVOKED, true)
    return !was
  }

  /**
   * Whether the key was revoked through the fast path. Routes that do not admit a generation
   * (models, stream-token minting, a stream token's request) ask this, so a revocation reaches them
   * as fast as it reaches generation.
   */
  revoked(): boolean {
    return this.#revoked
  }

  /** Ends a lease; `reason` (why the request ended) may pause the key (src/limits/pause.ts). */
  settle(leaseId: string, used: TokenUse, reason?: EndReason | null): boolean {
    const settled = this.#ledger.settle(leaseId, used, Date.now(), reason ?? null)
    this.#write()
    return settled
  }

  status(limits: EffectiveLimits): LimiterStatus {
    this.#limits = limits
    const status = this.#ledger.status(limits, Date.now())
    this.#write()
    return { revoked: this.#revoked, ...status }
  }

  /**
   * The key's settled usage per UTC day over the last `days` days (1 to HISTORY_DAYS, today
   * included), oldest first; a day without a settled request is left out. A request counts in the
   * day it was admitted in, once it has settled.
   */
  usageHistory(days: number): UsageDay[] {
    return this.#ledger.usageHistory(days, Date.now())
  }

  /** Schedules the pending changes to be written, once per FLUSH_MS at most. */
  #write(): void {
    if (this.#pending.size === 0 || this.#flushTimer !== null) return
    this.#flushTimer = setTimeout(this.#flush, FLUSH_MS)
  }

  #flush = (): void => {
    this.#flushTimer = null
    const storage = this.ctx.storage.kv
    // One implicit transaction: everything since the last flush, or nothing.
    for (const [key, value] of this.#pending) {
      if (value === DELETED) storage.delete(key)
      else storage.put(key, value)
    }
    this.#pending.clear()
    this.#report()
  }

  /** A change the bound held back, once it allows (unless a flush sent it first). */
  #reportLater = (): void => {
    this.#reportTimer = null
    this.#report()
  }

  /** Sends the key's report to the board when src/limits/budget-report.ts says so; never awaited. */
  #report(): void {
    const keyId = this.#keyId ?? this.ctx.id.name ?? null
    if (keyId === null || this.#limits === null) return
    const now = Date.now()
    const report: KeyReport = { keyId, at: now, budgets: this.#ledger.budgets(this.#limits, now), spike: this.#ledger.spike(now) }
    // Leases the budgets found expired are written with the next batch.
    this.#write()
    const state = reportedState(report)
    const delay = reportDelay(this.#reported, state)
    if (delay === null) return
    if (delay > 0) {
      this.#reportTimer ??= setTimeout(this.#reportLater, delay)
      return
    }
    this.#reported = state
    const sent = (async () => {
      await this.env.TELEMETRY.get(this.env.TELEMETRY.idFromName('global')).reportKey(report)
    })().catch((error: unknown) => {
      // The key id is a public identifier; no key, prompt or completion is ever logged.
      console.warn(JSON.stringify({ event: 'key_report_failed', keyId, error: error instanceof Error ? error.name : 'unknown' }))
    })
    this.ctx.waitUntil(sent)
  }
}

/** How often a limiter writes its changes to storage. */
export const FLUSH_MS = 250

const DELETED = Symbol('deleted')

// Storage layout: `c:<at, 13 digits>:<lease id>` -> tokens (sorted by time, so a prefix list
// reads the window in order), `l:<lease id>` -> the lease, `totals` -> lifetime counters,
// `slow` -> the slow-request strikes and last pause, `revoked` -> true once the key is revoked,
// `u:<YYYY-MM-DD>` -> [requests, prompt tokens, completion tokens] settled for that UTC day (the
// history, HISTORY_DAYS days), `h:<hour number>` -> tokens settled in that UTC hour (HOURS_KEPT
// hours, for the spike rule), `hfirst` -> the hour number of the key's first settled tokens.
const CHARGE = 'c:'
const LEASE = 'l:'
const TOTALS = 'totals'
const SLOW = 'slow'
const REVOKED = 'revoked'
const DAY = 'u:'
const HOUR = 'h:'
const FIRST_HOUR = 'hfirst'

interface StoredLease {
  at: number
  ip: string | null
  chargeKey: string
  /** Tokens reserved at admission; absent from leases stored before budgets (then: the charge's). */
  reserve?: number
}

/** A day row as stored: three numbers, the smallest value that holds them. */
type StoredDay = [requests: number, promptTokens: number, completionTokens: number]

function chargeKey(charge: Charge): string {
  return `${CHARGE}${String(charge.at).padStart(13, '0')}:${charge.id}`
}

/** Collects a call's changes by key; the last change to a key wins. */
function batchingStore(pending: Map<string, unknown>): LedgerStore {
  return {
    saveCharge: (charge) => pending.set(chargeKey(charge), charge.tokens),
    dropCharge: (charge) => pending.set(chargeKey(charge), DELETED),
    saveLease: (id, lease) =>
      pending.set(LEASE + id, {
        at: lease.at,
        ip: lease.ip,
        chargeKey: chargeKey(lease.charge),
        reserve: lease.reserve,
      } satisfies StoredLease),
    dropLease: (id) => pending.set(LEASE + id, DELETED),
    saveTotals: (totals) => pending.set(TOTALS, structuredClone(totals)),
    saveSlow: (state) => pending.set(SLOW, structuredClone(state)),
    saveDay: (date, usage) => pending.set(DAY + date, [usage.requests, usage.promptTokens, usage.completionTokens] satisfies StoredDay),
    dropDay: (date) => pending.set(DAY + date, DELETED),
    saveHour: (hour, tokens) => pending.set(HOUR + hour, tokens),
    dropHour: (hour) => pending.set(HOUR + hour, DELETED),
    saveFirstHour: (hour) => pending.set(FIRST_HOUR, hour),
  }
}

function loadState(storage: SyncKvStorage): ConstructorParameters<typeof Ledger>[0] {
  const charges: Charge[] = []
  const byKey = new Map<string, Charge>()
  for (const [key, tokens] of storage.list<number>({ prefix: CHARGE })) {
    const at = Number(key.slice(CHARGE.length, CHARGE.length + 13))
    const charge = { id: key.slice(CHARGE.length + 14), at, tokens }
    charges.push(charge)
    byKey.set(key, charge)
  }
  const leases = new Map<string, Lease>()
  for (const [key, stored] of storage.list<StoredLease>({ prefix: LEASE })) {
    // A lease whose charge has left the window keeps a detached charge: it no longer counts.
    const charge = byKey.get(stored.chargeKey) ?? { id: key.slice(LEASE.length), at: stored.at, tokens: 0 }
    leases.set(key.slice(LEASE.length), { at: stored.at, ip: stored.ip, charge, reserve: stored.reserve ?? charge.tokens })
  }
  const days = new Map<number, DayUsage>()
  for (const [key, [requests, promptTokens, completionTokens]] of storage.list<StoredDay>({ prefix: DAY })) {
    const day = dayOfDate(key.slice(DAY.length))
    if (day !== null) days.set(day, { requests, promptTokens, completionTokens })
  }
  const hours = new Map<number, number>()
  for (const [key, tokens] of storage.list<number>({ prefix: HOUR })) hours.set(Number(key.slice(HOUR.length)), tokens)
  const totals = storage.get<UsageTotals>(TOTALS)
  const slow = storage.get<SlowState>(SLOW)
  const firstHour = storage.get<number>(FIRST_HOUR) ?? null
  return { charges, leases, days, hours, firstHour, ...(totals ? { totals } : {}), ...(slow ? { slow } : {}) }
}
