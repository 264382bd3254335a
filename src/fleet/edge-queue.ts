// The fleet's edge queue, the pure part: how many requests a backend takes per priority class, the
// order waiting requests leave in (priority class, then weighted fairness between keys, then
// arrival), and whether a new request can be served within its class's deadline. The slot ledger
// (src/durable/backend-slots.ts) holds one FairQueue beside its exact counts, so a released slot
// goes to the next waiting request in the same turn (docs/fleet.md, The edge queue).
import { PRIORITY_CLASSES, type PriorityClass } from '../auth/key-record.ts'

/**
 * The extra room interactive requests get in vLLM's own waiting queue: 1/8 of `maxConcurrency`, at
 * least one. One that finds no free slot waits there ahead of everyone (vLLM's priority policy,
 * `priority` -1) for the next slot of that backend, not at the edge for a round trip.
 */
export function reservedSlots(maxConcurrency: number): number {
  return Math.max(1, Math.ceil(maxConcurrency / 8))
}

/**
 * Requests a backend may hold (running plus in vLLM's queue) before a request of `priority` waits
 * at the edge instead: standard and batch fill the slots, interactive may also wait briefly in
 * vLLM's queue, where it goes first. Batch requests also leave the fleet's interactive reserve free
 * (InteractiveReserve), which the ledger checks with its exact counts.
 */
export function slotLimit(maxConcurrency: number, priority: PriorityClass): number {
  return priority === 'interactive' ? maxConcurrency + reservedSlots(maxConcurrency) : maxConcurrency
}

/**
 * How long the interactive reserve remembers a peak: long enough to span the gaps of an interactive
 * key's traffic at a few requests a second, short enough that a fleet with no interactive traffic
 * left gives batch work every slot again within seconds.
 */
export const RESERVE_WINDOW_MS = 10_000

/**
 * The fleet's slots kept free of batch work for interactive requests: the most interactive
 * requests the fleet held at once over the last RESERVE_WINDOW_MS. A fixed share was measured first
 * (1/8 of the slots): an interactive key at 20% of the fleet's capacity holds about as many slots
 * on average, so half its requests found none and waited for a generation to end
 * (npm run bench:saturation). Sized by the recent peak, an interactive request finds a free slot
 * unless its traffic just rose past anything of the last seconds; with no interactive traffic,
 * batch work gets every slot (no GPU idles for a class that is not there).
 */
export class InteractiveReserve {
  /** [second, the most interactive requests held in it], oldest first. */
  #seconds: [number, number][] = []
  #now = 0

  /** The fleet holds `held` interactive requests now. */
  held(held: number, now: number): void {
    this.#now = held
    const second = Math.floor(now / 1_000)
    const last = this.#seconds.at(-1)
    if (last && last[0] === second) last[1] = Math.max(last[1], held)
    else this.#seconds.push([second, held])
    this.#trim(now)
  }

  /** Slots batch requests must leave free now: the recent peak, and never less than what is held now. */
  slots(now: number): number {
    this.#trim(now)
    let peak = this.#now
    for (const [, held] of this.#seconds) peak = Math.max(peak, held)
    return peak
  }

  #trim(now: number): void {
    const oldest = Math.floor((now - RESERVE_WINDOW_MS) / 1_000)
    while (this.#seconds.length > 0 && (this.#seconds[0] as [number, number])[0] < oldest) this.#seconds.shift()
  }
}

/**
 * How long a request of each class may wait at the edge before it is refused (503
 * `queue_timeout`). An interactive user gives up after seconds; batch work would rather wait than
 * retry. All well under the 100 s Cloudflare allows a response's headers, and the wait does not
 * count toward FIRST_EVENT_TIMEOUT_MS, which starts when the request is sent to its backend.
 */
export const QUEUE_DEADLINE_MS: Readonly<Record<PriorityClass, number>> = { interactive: 10_000, standard: 20_000, batch: 30_000 }

/** The queue holds no request longer than this, whatever its ticket asks. */
export const MAX_QUEUE_DEADLINE_MS = 60_000

/**
 * Requests one queue holds at most. Each costs a few hundred bytes of the object's memory; 10,000
 * is minutes of a fleet's turnover, far past any deadline above, so the bound only stops a flood.
 * When it is reached, a new request displaces the newest waiting request of a lower class, or is
 * refused.
 */
export const MAX_WAITING = 10_000

/** A request waiting for a slot. */
export interface Waiter<T> {
  readonly id: string
  readonly keyId: string
  readonly priority: PriorityClass
  readonly weight: number
  readonly arrivedAt: number
  /** Its key's virtual finish time within its class: the queue serves the smallest first. */
  readonly tag: number
  readonly value: T
}

export interface WaiterInput<T> {
  id: string
  keyId: string
  priority: PriorityClass
  weight: number
  value: T
}

/** One key's waiting requests in one class (arrival order) and the virtual time its last one ends. */
interface KeyLane<T> {
  waiting: Waiter<T>[]
  lastTag: number
}

/** One priority class: start-time fair queuing between keys (each key's share is its weight). */
interface ClassQueue<T> {
  /** The virtual time: the start tag of the request last served. A key that comes back starts here, with no credit saved. */
  now: number
  lanes: Map<string, KeyLane<T>>
  size: number
}

/**
 * Waiting requests in the order they leave: every request of a higher class before any of a lower
 * one; within a class, fairly between keys by weight (a key with fifty waiting requests takes its
 * turn, not fifty turns, before a key with one; a key of weight 2 gets two turns to weight 1's one),
 * after start-time fair queuing (Goyal, Vin and Cheng 1996); within a key, arrival order.
 */
export class FairQueue<T> {
  readonly #classes = new Map<PriorityClass, ClassQueue<T>>(PRIORITY_CLASSES.map((c) => [c, { now: 0, lanes: new Map(), size: 0 }]))
  readonly #byId = new Map<string, Waiter<T>>()

  get size(): number {
    return this.#byId.size
  }

  /** Adds a request; its tag places it among its class's requests. */
  add(input: WaiterInput<T>, now: number): Waiter<T> {
    const queue = this.#class(input.priority)
    let lane = queue.lanes.get(input.keyId)
    if (!lane) {
      lane = { waiting: [], lastTag: 0 }
      queue.lanes.set(input.keyId, lane)
    }
    const tag = Math.max(queue.now, lane.lastTag) + 1 / input.weight
    lane.lastTag = tag
    const waiter: Waiter<T> = { ...input, arrivedAt: now, tag }
    lane.waiting.push(waiter)
    queue.size++
    this.#byId.set(waiter.id, waiter)
    return waiter
  }

  /** How many waiting requests leave before `waiter`: every one of a higher class, and those of its class with a smaller tag. */
  ahead(waiter: Waiter<T>): number {
    let count = 0
    for (const priority of PRIORITY_CLASSES) {
      const queue = this.#class(priority)
      if (priority === waiter.priority) {
        for (const lane of queue.lanes.values()) for (const other of lane.waiting) if (other.tag < waiter.tag) count++
        return count
      }
      count += queue.size
    }
    return count
  }

  get(id: string): Waiter<T> | undefined {
    return this.#byId.get(id)
  }

  /** Takes a request out (served, left, timed out, displaced); false if it was not waiting. */
  remove(id: string): boolean {
    const waiter = this.#byId.get(id)
    if (!waiter) return false
    this.#byId.delete(id)
    const queue = this.#class(waiter.priority)
    const lane = queue.lanes.get(waiter.keyId)
    if (lane) {
      lane.waiting.splice(lane.waiting.indexOf(waiter), 1)
      // A lane is kept only while it waits or its last tag is ahead of the class's time (else it
      // would start at the class's time anyway): bounded by the keys waiting, not the keys ever seen.
      if (lane.waiting.length === 0 && lane.lastTag <= queue.now) queue.lanes.delete(waiter.keyId)
    }
    queue.size--
    return true
  }

  /**
   * Takes out and returns the next request that `placeable` accepts: the highest class's, within it
   * the key whose first waiting request has the smallest tag. A key whose first request cannot be
   * placed (none of its backends has room) is passed over for this turn. Null when none is placeable.
   */
  next(placeable: (waiter: Waiter<T>) => boolean): Waiter<T> | null {
    for (const priority of PRIORITY_CLASSES) {
      const queue = this.#class(priority)
      if (queue.size === 0) continue
      let best: Waiter<T> | null = null
      for (const [keyId, lane] of queue.lanes) {
        const head = lane.waiting[0]
        if (!head) {
          // Idle since the class's time passed its last tag: it would start at the class's time anyway.
          if (lane.lastTag <= queue.now) queue.lanes.delete(keyId)
          continue
        }
        if ((best === null || head.tag < best.tag) && placeable(head)) best = head
      }
      if (best === null) continue
      queue.now = Math.max(queue.now, best.tag - 1 / best.weight)
      this.remove(best.id)
      return best
    }
    return null
  }

  /** The newest waiting request of the lowest class below `priority`, the first to be displaced; null: none. */
  displaceable(priority: PriorityClass): Waiter<T> | null {
    const rank = PRIORITY_CLASSES.indexOf(priority)
    for (const lower of [...PRIORITY_CLASSES].reverse()) {
      if (PRIORITY_CLASSES.indexOf(lower) <= rank) return null
      let newest: Waiter<T> | null = null
      for (const lane of this.#class(lower).lanes.values()) {
        const last = lane.waiting.at(-1)
        if (last && (newest === null || last.arrivedAt > newest.arrivedAt)) newest = last
      }
      if (newest) return newest
    }
    return null
  }

  #class(priority: PriorityClass): ClassQueue<T> {
    return this.#classes.get(priority) as ClassQueue<T>
  }
}

/**
 * The release rate the wait estimate reads: slots freed over the last RATE_WINDOW_MS. A minute,
 * so a fleet of long generations (a slot freed every several seconds) still has a rate; fewer than
 * two releases in it mean the fleet frees less than a slot in a class's deadline.
 */
export const RATE_WINDOW_MS = 60_000

/** Slot releases over the last RATE_WINDOW_MS, counted per second (bounded memory at any rate): the fleet's service rate while it is full. */
export class ReleaseRate {
  /** [second, releases in it], oldest first. */
  #seconds: [number, number][] = []
  #total = 0

  released(now: number): void {
    const second = Math.floor(now / 1_000)
    const last = this.#seconds.at(-1)
    if (last && last[0] === second) last[1]++
    else this.#seconds.push([second, 1])
    this.#total++
    this.#trim(now)
  }

  /** Releases per second, or null with fewer than two in the window (no rate known yet). */
  perSecond(now: number): number | null {
    this.#trim(now)
    const first = this.#seconds[0]
    if (!first || this.#total < 2) return null
    const span = Math.max(1_000, now - first[0] * 1_000)
    return (this.#total * 1_000) / span
  }

  #trim(now: number): void {
    const oldest = Math.floor((now - RATE_WINDOW_MS) / 1_000)
    while (this.#seconds.length > 0 && (this.#seconds[0] as [number, number])[0] < oldest)
      this.#total -= (this.#seconds.shift() as [number, number])[1]
  }
}

/**
 * Whether a request with `ahead` requests before it can be served within `deadlineMs`, and if not,
 * in how many seconds a retry would be (Retry-After). Without a known rate (no slot freed lately)
 * the queue takes as many as the fleet has slots: one generation's turnover.
 */
export function waitEstimate(
  ahead: number,
  ratePerS: number | null,
  totalSlots: number,
  deadlineMs: number,
): { fits: boolean; retryAfterS: number } {
  if (ratePerS === null) return { fits: ahead < totalSlots, retryAfterS: 1 }
  const waitMs = (ahead * 1_000) / ratePerS
  return { fits: waitMs <= deadlineMs, retryAfterS: Math.min(60, Math.max(1, Math.ceil((waitMs - deadlineMs) / 1_000))) }
}
