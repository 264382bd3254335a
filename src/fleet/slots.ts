// The isolate's side of the fleet's slot ledger (src/durable/backend-slots.ts): a lease per
// upstream request, claimed when the request is sent and released when it ends. Never on the
// critical path: the request goes out at once, and the ledger's answer, every backend's exact
// count across the fleet, arrives a round trip later. Three uses of it: the ranking counts the
// other isolates' requests from it, a request the answer shows queued behind full slots is hedged
// at once, and the isolates swap conversation placements on it (src/fleet/placements.ts).
import { keyWeight, type KeyRecord, type PriorityClass } from '../auth/key-record.ts'
import type { Background } from '../cache/stale-cache.ts'
import type { QueueRefusal, SlotCounts, SlotOffer } from '../durable/backend-slots.ts'
import type { WorkerEnv } from '../env.ts'
import { QUEUE_DEADLINE_MS } from './edge-queue.ts'
import type { PlacementPeer } from './placements.ts'

/** The ledger's one instance. */
export const SLOT_LEDGER_NAME = 'global'

/** One request's lease. */
export interface SlotClaim {
  /** Every backend's requests across the fleet, this one included, at the claim; null: the ledger did not answer. */
  readonly counted: Promise<SlotCounts | null>
  /** The request ended: frees its lease (in the background, after the claim). Idempotent. */
  release(): void
}

/** Who waits, for the edge queue's order: the key, its priority class and its weight. */
export interface QueuePlace {
  keyId: string
  priority: PriorityClass
  weight: number
}

/** A key's place in the edge queue: its priority class (standard when absent) and weight. */
export function queuePlaceOf(keyId: string, record: Pick<KeyRecord, 'priority' | 'weight'>): QueuePlace {
  return { keyId, priority: record.priority ?? 'standard', weight: keyWeight(record) }
}

/** What waiting at the edge came to. */
export type Acquired =
  /** A slot on `backendId`: `claim` is its lease, already counted, to release when the request ends. */
  | { kind: 'granted'; backendId: string; claim: SlotClaim; waitedMs: number }
  | { kind: 'refused'; reason: QueueRefusal; retryAfterS: number; waitedMs: number }
  /** The request's signal fired (its client left): it is out of the queue, or its lease released. */
  | { kind: 'left'; waitedMs: number }
  /** The ledger failed or did not answer in time. */
  | { kind: 'unavailable'; waitedMs: number }

export interface SlotLedger {
  /** Counts a request sent on this isolate's view; its class tells the ledger which leases are interactive (the reserve). */
  claim(backendId: string, priority?: PriorityClass): SlotClaim
  /** Waits in the fleet's edge queue for a slot on one of `offers` (best first). */
  acquire(place: QueuePlace, offers: SlotOffer[], signal: AbortSignal): Promise<Acquired>
}

/**
 * An edge queue's answer may come this long after its class's deadline: the object's own timer
 * answers at the deadline, so past it the object is gone or unreachable and waiting longer helps nobody.
 */
const QUEUE_ANSWER_GRACE_MS = 2_000

/**
 * The ledger, or null when the deployment has it off or lacks the binding (a benchmark-only entry).
 * `peer` gives the claims this isolate's new placements and takes the others'.
 */
export function slotLedger(
  env: Pick<WorkerEnv, 'BACKEND_SLOTS'>,
  enabled: boolean,
  peer: PlacementPeer,
  background?: Background,
): SlotLedger | null {
  const namespace: WorkerEnv['BACKEND_SLOTS'] | undefined = env.BACKEND_SLOTS
  if (!enabled || namespace === undefined) return null
  const ledgerStub = () => namespace.get(namespace.idFromName(SLOT_LEDGER_NAME))
  const lease = (backendId: string, leaseId: string, counted: Promise<SlotCounts | null>): SlotClaim => {
    let released = false
    return {
      counted,
      release() {
        if (released) return
        released = true
        // After the claim, so the release never overtakes it; also when the claim failed, since it
        // may have counted the lease before its answer was lost.
        const work = counted.then(() => ledgerStub().release(backendId, leaseId)).catch(() => undefined)
        if (background) background(work)
        else void work
      },
    }
  }
  return {
    claim(backendId, priority = 'standard') {
      const leaseId = crypto.randomUUID()
      const counted = ledgerStub()
        .claim(backendId, leaseId, peer.takePlacements(), priority)
        .then(
          (answer) => {
            peer.learnPlacements(answer.news)
            return answer.counts
          },
          (error: unknown) => {
            logLedgerFailure('slot_claim_failed', error)
            return null
          },
        )
      return lease(backendId, leaseId, counted)
    },
    async acquire(place, offers, signal) {
      const startedAt = Date.now()
      const waited = () => Date.now() - startedAt
      if (signal.aborted) return { kind: 'left', waitedMs: 0 }
      const ticketId = crypto.randomUUID()
      const deadlineMs = QUEUE_DEADLINE_MS[place.priority]
      const ledger = ledgerStub()
      const { promise, resolve } = Promise.withResolvers<Acquired>()
      let settled = false
      const settle = (acquired: Acquired) => {
        if (settled) return false
        settled = true
        clearTimeout(timer)
        signal.removeEventListener('abort', leave)
        resolve(acquired)
        return true
      }
      // Out of the queue at once; a grant that crossed the leave is released by the same call.
      const leave = () => {
        if (!settle({ kind: 'left', waitedMs: waited() })) return
        const work = ledger.leave(ticketId).catch(() => undefined)
        if (background) background(work)
        else void work
      }
      const timer = setTimeout(() => {
        if (!settle({ kind: 'unavailable', waitedMs: waited() })) return
        void ledger.leave(ticketId).catch(() => undefined)
      }, deadlineMs + QUEUE_ANSWER_GRACE_MS)
      signal.addEventListener('abort', leave, { once: true })
      ledger.acquire({ id: ticketId, ...place, offers, deadlineMs, placements: peer.takePlacements() }).then(
        (grant) => {
          if (grant.kind !== 'granted') {
            if (grant.kind === 'refused') settle({ ...grant, waitedMs: waited() })
            return
          }
          peer.learnPlacements(grant.news)
          const claim = lease(grant.backendId, ticketId, Promise.resolve(grant.counts))
          // Granted after the request left or gave up: the slot goes straight back.
          if (!settle({ kind: 'granted', backendId: grant.backendId, claim, waitedMs: waited() })) claim.release()
        },
        (error: unknown) => {
          logLedgerFailure('slot_queue_failed', error)
          settle({ kind: 'unavailable', waitedMs: waited() })
        },
      )
      return promise
    },
  }
}

/** A lost answer costs a claim its check and the placements it carried (hints), a waiting request its wait (503). Only the error's name is logged. */
function logLedgerFailure(event: string, error: unknown): void {
  console.error(JSON.stringify({ event, error: error instanceof Error ? error.name : 'unknown' }))
}
