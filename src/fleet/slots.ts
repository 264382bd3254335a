// The isolate's side of the fleet's slot ledger (src/durable/backend-slots.ts): a lease per
// upstream request, claimed when the request is sent and released when it ends. Never on the
// critical path: the request goes out at once, and the ledger's answer, every backend's exact
// count across the fleet, arrives a round trip later. Three uses of it: the ranking counts the
// other isolates' requests from it, a request the answer shows queued behind full slots is hedged
// at once, and the isolates swap conversation placements on it (src/fleet/placements.ts).
import type { Background } from '../cache/stale-cache.ts'
import type { SlotCounts } from '../durable/backend-slots.ts'
import type { WorkerEnv } from '../env.ts'
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

export interface SlotLedger {
  claim(backendId: string): SlotClaim
}

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
  return {
    claim(backendId) {
      const ledger = namespace.get(namespace.idFromName(SLOT_LEDGER_NAME))
      const leaseId = crypto.randomUUID()
      const counted = ledger.claim(backendId, leaseId, peer.takePlacements()).then(
        (answer) => {
          peer.learnPlacements(answer.news)
          return answer.counts
        },
        (error: unknown) => {
          // A lost answer costs this request its check and the placements it carried (hints). Only the error's name is logged.
          console.error(JSON.stringify({ event: 'slot_claim_failed', error: error instanceof Error ? error.name : 'unknown' }))
          return null
        },
      )
      let released = false
      return {
        counted,
        release() {
          if (released) return
          released = true
          // After the claim, so the release never overtakes it; also when the claim failed, since it
          // may have counted the lease before its answer was lost.
          const work = counted.then(() => ledger.release(backendId, leaseId)).catch(() => undefined)
          if (background) background(work)
          else void work
        },
      }
    },
  }
}
