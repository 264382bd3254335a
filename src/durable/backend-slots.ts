import { DurableObject } from 'cloudflare:workers'
import type { PriorityClass } from '../auth/key-record.ts'
import type { WorkerEnv } from '../env.ts'
import {
  FairQueue,
  InteractiveReserve,
  MAX_QUEUE_DEADLINE_MS,
  MAX_WAITING,
  ReleaseRate,
  slotLimit,
  waitEstimate,
  type Waiter,
} from '../fleet/edge-queue.ts'
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

/** A backend a waiting request may take, in the isolate's ranked order. */
export interface SlotOffer {
  id: string
  maxConcurrency: number
}

/** A request that found every backend full in its isolate's view and asks the edge queue for a slot. */
export interface SlotTicket {
  /** Also the lease's id once granted. */
  id: string
  keyId: string
  priority: PriorityClass
  weight: number
  /** The backends it may go to, best first (the ranking's order). */
  offers: SlotOffer[]
  /** How long it may wait: its class's QUEUE_DEADLINE_MS (src/fleet/edge-queue.ts). */
  deadlineMs: number
  placements?: PlacementExchange
}

/** Why the edge queue refused a request: it could not be served within its class's deadline, the deadline passed, or a higher class displaced it. */
export type QueueRefusal = 'queue_full' | 'queue_timeout' | 'queue_displaced'

/** What a ticket gets: a lease on a backend (already counted), a refusal, or nothing because its request left. */
export type SlotGrant =
  | { kind: 'granted'; backendId: string; counts: SlotCounts; news: PlacementNews; waitedMs: number }
  | { kind: 'refused'; reason: QueueRefusal; retryAfterS: number; waitedMs: number }
  | { kind: 'left' }

interface Pending {
  ticket: SlotTicket
  answer: (grant: SlotGrant) => void
  timer: ReturnType<typeof setTimeout>
}

/**
 * Every backend's requests in flight, counted across all isolates (one instance, named "global"):
 * each upstream attempt claims a lease when its request is sent and releases it when the request
 * ends. A claim's answer is every backend's exact count, the new request included, which the
 * isolate gets a round trip after sending, off the critical path (src/fleet/slots.ts). In memory
 * only: an evicted ledger starts again from zero and undercounts for one generation's time. The
 * claim also carries conversation placements between isolates (src/fleet/placements.ts), on the
 * call every request makes anyway. And it is the fleet's edge queue: a request whose isolate saw
 * every backend full asks it for a slot (acquire), and waits here, in one order for every isolate,
 * until a release frees one (src/fleet/edge-queue.ts). One object serves two calls per upstream
 * request (three for one that waits); a fleet beyond a few hundred requests a second would shard
 * it by backend group (docs/fleet.md, The edge queue).
 */
export class BackendSlots extends DurableObject<WorkerEnv> {
  /** Per backend: lease id -> when it was claimed. Insertion order is claim order, oldest first. */
  #leases = new Map<string, Map<string, number>>()
  /** In memory only: a placement is a cache hint, and an evicted object's isolates refill it within a second. */
  #placements = new PlacementLog()
  /** Requests waiting for a slot; in memory, as the leases (an evicted object's waiters' calls fail, and their isolates answer 503). */
  #queue = new FairQueue<Pending>()
  #releases = new ReleaseRate()
  /** The leases of interactive requests (a subset of #leases' ids), and the reserve their recent peak sizes. */
  #interactive = new Set<string>()
  #reserve = new InteractiveReserve()
  #repump: ReturnType<typeof setTimeout> | null = null

  /**
   * Counts `leaseId` in at `backendId` and answers every backend's count, this request included,
   * with the placements other isolates made since the caller's last claim (it sends its own).
   * Unconditional: the isolate's view had room, and the request is already sent.
   */
  claim(
    backendId: string,
    leaseId: string,
    placements: PlacementExchange = { placements: [], since: null },
    priority: PriorityClass = 'standard',
  ): ClaimAnswer {
    this.#count(backendId, leaseId, priority)
    return { counts: this.counts(), news: this.#placements.exchange(placements) }
  }

  /**
   * A slot for a request whose isolate saw every backend full: at once on the first offered backend
   * under its class's limit (slotLimit), else a place in the queue, answered when a release frees a
   * slot for it (granted: the lease is counted), when its deadline passes, or when a higher class
   * displaces it. Refused at once when the requests ahead of it would not be served within its
   * class's deadline at the rate slots are freed now: lower classes are shed first, since every
   * higher one waits ahead of them.
   */
  async acquire(ticket: SlotTicket): Promise<SlotGrant> {
    const now = Date.now()
    if (this.#queue.size === 0) {
      const backendId = this.#placeable(ticket)
      if (backendId !== null) return this.#grant(ticket, backendId, now, now)
    }
    return new Promise<SlotGrant>((resolve) => this.#enqueue(ticket, resolve, now))
  }

  /** The ticket's request left (its client went away): out of the queue, or its granted lease released. */
  leave(ticketId: string): void {
    const waiting = this.#queue.get(ticketId)
    if (waiting) {
      this.#queue.remove(ticketId)
      clearTimeout(waiting.value.timer)
      waiting.value.answer({ kind: 'left' })
      return
    }
    for (const [backendId, leases] of this.#leases) if (leases.has(ticketId)) this.release(backendId, ticketId)
  }

  /** The request ended (or never reached the backend): its slot goes to the next waiting request. Releasing an unknown lease is a no-op. */
  release(backendId: string, leaseId: string): void {
    if (this.#leases.get(backendId)?.delete(leaseId)) this.#releases.released(Date.now())
    if (this.#interactive.delete(leaseId)) this.#reserve.held(this.#interactive.size, Date.now())
    this.#pump()
  }

  /** Requests waiting in the edge queue now. */
  waiting(): number {
    return this.#queue.size
  }

  /** Every backend's count now. */
  counts(): SlotCounts {
    const now = Date.now()
    const counts: SlotCounts = {}
    for (const [backendId, leases] of this.#leases) {
      for (const [id, claimedAt] of leases) {
        if (now - claimedAt < LEASE_TTL_MS) break
        leases.delete(id)
        this.#interactive.delete(id)
      }
      counts[backendId] = leases.size
    }
    return counts
  }

  #count(backendId: string, leaseId: string, priority: PriorityClass): void {
    let leases = this.#leases.get(backendId)
    if (!leases) {
      leases = new Map()
      this.#leases.set(backendId, leases)
    }
    leases.set(leaseId, Date.now())
    if (priority !== 'interactive') return
    this.#interactive.add(leaseId)
    this.#reserve.held(this.#interactive.size, Date.now())
  }

  /**
   * The first offered backend with room under the ticket's class limit, or null. A batch request
   * also leaves the interactive reserve free fleet-wide (InteractiveReserve).
   */
  #placeable(ticket: SlotTicket): string | null {
    const counts = this.counts()
    if (ticket.priority === 'batch' && freeSlots(ticket.offers, counts) <= this.#batchReserve(ticket.offers)) return null
    for (const offer of ticket.offers) {
      if ((counts[offer.id] ?? 0) < slotLimit(offer.maxConcurrency, ticket.priority)) return offer.id
    }
    return null
  }

  /**
   * Slots a batch request must leave free: the interactive reserve, at most half of the slots it
   * may take, so a spike of interactive traffic delays batch work but never shuts it out.
   */
  #batchReserve(offers: readonly SlotOffer[]): number {
    return Math.min(this.#reserve.slots(Date.now()), Math.floor(totalSlots(offers) / 2))
  }

  #grant(ticket: SlotTicket, backendId: string, arrivedAt: number, now: number): SlotGrant {
    this.#count(backendId, ticket.id, ticket.priority)
    const news = this.#placements.exchange(ticket.placements ?? { placements: [], since: null })
    return { kind: 'granted', backendId, counts: this.counts(), news, waitedMs: now - arrivedAt }
  }

  #enqueue(ticket: SlotTicket, answer: (grant: SlotGrant) => void, now: number): void {
    if (this.#queue.size >= MAX_WAITING) {
      const displaced = this.#queue.displaceable(ticket.priority)
      if (!displaced) return answer({ kind: 'refused', reason: 'queue_full', retryAfterS: 1, waitedMs: 0 })
      this.#refuse(displaced, 'queue_displaced', 1, now)
    }
    const deadlineMs = Math.min(ticket.deadlineMs, MAX_QUEUE_DEADLINE_MS)
    const timer = setTimeout(() => this.#timeOut(ticket.id), deadlineMs)
    const waiter = this.#queue.add(
      { id: ticket.id, keyId: ticket.keyId, priority: ticket.priority, weight: ticket.weight, value: { ticket, answer, timer } },
      now,
    )
    // Its class's limit, or another offered backend, may have room now even while others wait.
    this.#pump()
    if (!this.#queue.get(waiter.id)) return
    const estimate = waitEstimate(this.#queue.ahead(waiter), this.#releases.perSecond(now), totalSlots(ticket.offers), deadlineMs)
    if (!estimate.fits) this.#refuse(waiter, 'queue_full', estimate.retryAfterS, now)
  }

  #timeOut(ticketId: string): void {
    const waiter = this.#queue.get(ticketId)
    if (!waiter) return
    const now = Date.now()
    const estimate = waitEstimate(this.#queue.ahead(waiter), this.#releases.perSecond(now), totalSlots(waiter.value.ticket.offers), 0)
    this.#refuse(waiter, 'queue_timeout', estimate.retryAfterS, now)
  }

  #refuse(waiter: Waiter<Pending>, reason: QueueRefusal, retryAfterS: number, now: number): void {
    this.#queue.remove(waiter.id)
    clearTimeout(waiter.value.timer)
    waiter.value.answer({ kind: 'refused', reason, retryAfterS, waitedMs: now - waiter.arrivedAt })
  }

  /** Hands freed slots to waiting requests, in the queue's order, until none has room. */
  #pump(): void {
    if (this.#queue.size === 0) return
    const now = Date.now()
    for (;;) {
      const next = this.#queue.next((waiter) => this.#placeable(waiter.value.ticket) !== null)
      const backendId = next && this.#placeable(next.value.ticket)
      if (!next || backendId === null) break
      clearTimeout(next.value.timer)
      next.value.answer(this.#grant(next.value.ticket, backendId, next.arrivedAt, now))
    }
    // Room also comes without a release: the interactive reserve's peak ages out, a lost lease
    // expires. While anyone waits, the queue is run again each second.
    if (this.#queue.size > 0 && this.#repump === null) {
      this.#repump = setTimeout(() => {
        this.#repump = null
        this.#pump()
      }, 1_000)
    }
  }
}

/** The sequence slots of the backends a request may take (its isolate's rotation). */
function totalSlots(offers: readonly SlotOffer[]): number {
  return offers.reduce((total, offer) => total + offer.maxConcurrency, 0)
}

/** Those not taken now (a backend over its slots frees none of another's). */
function freeSlots(offers: readonly SlotOffer[], counts: SlotCounts): number {
  return offers.reduce((free, offer) => free + Math.max(0, offer.maxConcurrency - (counts[offer.id] ?? 0)), 0)
}
