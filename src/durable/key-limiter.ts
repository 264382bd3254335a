import { DurableObject } from 'cloudflare:workers'
import type { EndReason } from '../ending.ts'
import type { WorkerEnv } from '../env.ts'
import {
  Ledger,
  type AdmitInput,
  type Charge,
  type Decision,
  type EffectiveLimits,
  type Lease,
  type LedgerStore,
  type LimitView,
  type TokenUse,
  type UsageTotals,
} from '../limits/ledger.ts'
import type { SlowState } from '../limits/pause.ts'

/** The limiter's answer: the ledger's decision, or a refusal because the key was revoked. */
export type LimiterDecision = Decision | { admitted: false; revoked: true; view: LimitView }

export interface LimiterStatus {
  revoked: boolean
  inFlight: number
  view: LimitView
  totals: UsageTotals
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
 */
export class KeyLimiter extends DurableObject<WorkerEnv> {
  #ledger: Ledger
  #pending = new Map<string, unknown>()
  #flushTimer: ReturnType<typeof setTimeout> | null = null
  #revoked: boolean

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    this.#ledger = new Ledger(loadState(ctx.storage.kv), batchingStore(this.#pending))
    this.#revoked = ctx.storage.kv.get<boolean>(REVOKED) === true
  }

  admit(input: AdmitInput): LimiterDecision {
    // Every request of the key asks here first, so a revocation stops the next one, in seconds,
    // where the key record in KV reaches each isolate only after its cache TTL and KV's propagation.
    if (this.#revoked) return { admitted: false, revoked: true, view: this.#ledger.status(input.limits, Date.now()).view }
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

  /** Ends a lease; `reason` (why the request ended) may pause the key (src/limits/pause.ts). */
  settle(leaseId: string, used: TokenUse, reason?: EndReason | null): boolean {
    const settled = this.#ledger.settle(leaseId, used, Date.now(), reason ?? null)
    this.#write()
    return settled
  }

  status(limits: EffectiveLimits): LimiterStatus {
    const status = this.#ledger.status(limits, Date.now())
    this.#write()
    return { revoked: this.#revoked, ...status }
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
  }
}

/** How often a limiter writes its changes to storage. */
export const FLUSH_MS = 250

const DELETED = Symbol('deleted')

// Storage layout: `c:<at, 13 digits>:<lease id>` -> tokens (sorted by time, so a prefix list
// reads the window in order), `l:<lease id>` -> the lease, `totals` -> lifetime counters,
// `slow` -> the slow-request strikes and last pause, `revoked` -> true once the key is revoked.
const CHARGE = 'c:'
const LEASE = 'l:'
const TOTALS = 'totals'
const SLOW = 'slow'
const REVOKED = 'revoked'

interface StoredLease {
  at: number
  ip: string | null
  chargeKey: string
}

function chargeKey(charge: Charge): string {
  return `${CHARGE}${String(charge.at).padStart(13, '0')}:${charge.id}`
}

/** Collects a call's changes by key; the last change to a key wins. */
function batchingStore(pending: Map<string, unknown>): LedgerStore {
  return {
    saveCharge: (charge) => pending.set(chargeKey(charge), charge.tokens),
    dropCharge: (charge) => pending.set(chargeKey(charge), DELETED),
    saveLease: (id, lease) =>
      pending.set(LEASE + id, { at: lease.at, ip: lease.ip, chargeKey: chargeKey(lease.charge) } satisfies StoredLease),
    dropLease: (id) => pending.set(LEASE + id, DELETED),
    saveTotals: (totals) => pending.set(TOTALS, structuredClone(totals)),
    saveSlow: (state) => pending.set(SLOW, structuredClone(state)),
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
    leases.set(key.slice(LEASE.length), { at: stored.at, ip: stored.ip, charge })
  }
  const totals = storage.get<UsageTotals>(TOTALS)
  const slow = storage.get<SlowState>(SLOW)
  return { charges, leases, ...(totals ? { totals } : {}), ...(slow ? { slow } : {}) }
}
