import { DurableObject } from 'cloudflare:workers'
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

export interface LimiterStatus {
  inFlight: number
  view: LimitView
  totals: UsageTotals
}

/**
 * One API key's rate limits: requests and tokens per minute, and concurrent streams. One instance
 * per key (named by the key id). A Durable Object runs one call at a time, so the Ledger inside is
 * exact however many Workers ask at once. Every change is written to the object's SQLite-backed
 * storage before the answer leaves (the output gate), so a restarted object resumes with its
 * window and its in-flight leases.
 */
export class KeyLimiter extends DurableObject<WorkerEnv> {
  #ledger: Ledger

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    const storage = ctx.storage.kv
    this.#ledger = new Ledger(loadState(storage), kvLedgerStore(storage))
  }

  admit(input: AdmitInput): Decision {
    return this.#ledger.admit(input, Date.now())
  }

  settle(leaseId: string, used: TokenUse): boolean {
    return this.#ledger.settle(leaseId, used, Date.now())
  }

  status(limits: EffectiveLimits): LimiterStatus {
    return this.#ledger.status(limits, Date.now())
  }
}

// Storage layout: `c:<at, 13 digits>:<lease id>` -> tokens (sorted by time, so a prefix list
// reads the window in order), `l:<lease id>` -> the lease, `totals` -> lifetime counters.
const CHARGE = 'c:'
const LEASE = 'l:'
const TOTALS = 'totals'

interface StoredLease {
  at: number
  ip: string | null
  chargeKey: string
}

function chargeKey(charge: Charge): string {
  return `${CHARGE}${String(charge.at).padStart(13, '0')}:${charge.id}`
}

function kvLedgerStore(storage: SyncKvStorage): LedgerStore {
  return {
    saveCharge: (charge) => storage.put(chargeKey(charge), charge.tokens),
    dropCharge: (charge) => void storage.delete(chargeKey(charge)),
    saveLease: (id, lease) => storage.put<StoredLease>(LEASE + id, { at: lease.at, ip: lease.ip, chargeKey: chargeKey(lease.charge) }),
    dropLease: (id) => void storage.delete(LEASE + id),
    saveTotals: (totals) => storage.put(TOTALS, totals),
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
  return totals ? { charges, leases, totals } : { charges, leases }
}
