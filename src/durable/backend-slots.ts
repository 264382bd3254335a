import { DurableObject } from 'cloudflare:workers'
import type { WorkerEnv } from '../env.ts'
import { PlacementLog, type PlacementExchange, type PlacementNews } from '../fleet/placements.ts'

/**
 * A lease not released in this long is dropped: its isolate went away mid-request (evicted,
 * crashed), and an unreleased lease would count a request the backend no longer has. Long enough
 * for a long generation; one that outlives it is undercounted from then on, which is what every
 * isolate's view was before the ledger.
 */
export const LEASE_TTL_MS = 10 * 60_000

/** Requests in flight per backend id, across every isolate. */
export type SlotCounts = Record<string, number>

/** A claim's answer: every backend's count, and the other isolates' conversation placements since the caller's last. */
export interface ClaimAnswer {
  counts: SlotCounts
  news: PlacementNews
}

/**
 * Every backend's requests in flight, counted across all isolates (one instance, named "global"):
 * each upstream attempt claims a lease when its request is sent and releases it when the request
 * ends. A claim's answer is every backend's exact count, the new request included, which the
 * isolate gets a round trip after sending, off the critical path (src/fleet/slots.ts). In memory
 * only: an evicted ledger starts again from zero and undercounts for one generation's time. The
 * claim also carries conversation placements between isolates (src/fleet/placements.ts), on the
 * call every request makes anyway. One object serves two calls per upstream request; a fleet
 * beyond a few hundred requests a second would shard it by backend group (docs/fleet.md).
 */
export class BackendSlots extends DurableObject<WorkerEnv> {
  /** Per backend: lease id -> when it was claimed. Insertion order is claim order, oldest first. */
  #leases = new Map<string, Map<string, number>>()
  /** In memory only: a placement is a cache hint, and an evicted object's isolates refill it within a second. */
  #placements = new PlacementLog()

  /**
   * Counts `leaseId` in at `backendId` and answers every backend's count, this request included,
   * with the placements other isolates made since the caller's last claim (it sends its own).
   */
  claim(backendId: string, leaseId: string, placements: PlacementExchange = { placements: [], since: null }): ClaimAnswer {
    let leases = this.#leases.get(backendId)
    if (!leases) {
      leases = new Map()
      this.#leases.set(backendId, leases)
    }
    leases.set(leaseId, Date.now())
    return { counts: this.counts(), news: this.#placements.exchange(placements) }
  }

  /** The request ended (or never reached the backend). Releasing an unknown lease is a no-op. */
  release(backendId: string, leaseId: string): void {
    this.#leases.get(backendId)?.delete(leaseId)
  }

  /** Every backend's count now. */
  counts(): SlotCounts {
    const now = Date.now()
    const counts: SlotCounts = {}
    for (const [backendId, leases] of this.#leases) {
      for (const [id, claimedAt] of leases) {
        if (now - claimedAt < LEASE_TTL_MS) break
        leases.delete(id)
      }
      counts[backendId] = leases.size
    }
    return counts
  }
}
