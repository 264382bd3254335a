// Conversation placements shared by every isolate: which backend served a conversation's last
// turn, so holds its prefix in vLLM's cache. Rendezvous hashing already sends a conversation to
// the same backend from any isolate, but only while that backend has a free slot; a turn that
// overflowed elsewhere was remembered by its own isolate alone, and the next turn, landing on
// another isolate, missed the cache. Isolates swap their new placements on the slot ledger's claim
// (src/fleet/slots.ts), the call every upstream request makes anyway, so a follow-up that comes after
// the isolate's next request finds its backend wherever it lands. A hint, never an arbiter: a
// placement lost (an object evicted, an exchange failed) costs one prefill, so nothing here is stored.

/** A conversation (its prefix key, see prefixKeyOf) and the backend that served its last turn. */
export interface Placement {
  prefixKey: string
  backendId: string
}

/** What an isolate sends: its placements since its last exchange, and the last sequence it has seen. */
export interface PlacementExchange {
  placements: Placement[]
  /** null: send only, want nothing back. */
  since: number | null
}

/** What it gets back: the others' placements after `since`, oldest first, and the new last sequence. */
export interface PlacementNews {
  placements: Placement[]
  seq: number
}

/** At most this many placements go either way in one exchange (more than a busy isolate makes between two requests). */
export const PLACEMENTS_PER_EXCHANGE = 512
/** The object keeps this many: several seconds of the whole fleet's turns. */
export const PLACEMENT_LOG_ENTRIES = 8_192
/** Prefix keys are base-36 hashes and backend ids short names: anything longer is not ours. */
const MAX_FIELD_CHARS = 128

/** The object's log: a bounded sequence of placements, read from a sequence number on. */
export class PlacementLog {
  #entries: Placement[] = []
  /** Sequence number of the last entry. Starts at the clock, so a restarted object's numbers
   *  are (almost surely) past every number an isolate saw before: an isolate ahead of it, or
   *  too far behind, simply gets the newest entries. */
  #seq: number

  constructor(start = Date.now()) {
    this.#seq = start
  }

  get seq(): number {
    return this.#seq
  }

  add(placements: readonly Placement[]): void {
    for (const placement of placements.slice(0, PLACEMENTS_PER_EXCHANGE)) {
      if (!isPlacement(placement)) continue
      this.#entries.push({ prefixKey: placement.prefixKey, backendId: placement.backendId })
      this.#seq++
    }
    // Trimmed in halves, so adding stays amortized O(1).
    if (this.#entries.length > 2 * PLACEMENT_LOG_ENTRIES) this.#entries = this.#entries.slice(-PLACEMENT_LOG_ENTRIES)
  }

  /** The entries after sequence `seq`, the newest `limit` of them. */
  since(seq: number, limit = PLACEMENTS_PER_EXCHANGE): PlacementNews {
    const first = this.#seq - this.#entries.length
    const known = Number.isInteger(seq) && seq >= first && seq <= this.#seq
    const after = known ? this.#entries.slice(seq - first) : this.#entries
    return { placements: after.slice(-limit), seq: this.#seq }
  }

  /** One exchange: the news for the caller first (so it gets none of its own back), then its placements. */
  exchange(request: PlacementExchange): PlacementNews {
    const news = request.since === null ? { placements: [], seq: this.#seq } : this.since(request.since)
    this.add(Array.isArray(request.placements) ? request.placements : [])
    return { placements: news.placements, seq: this.#seq }
  }
}

function isPlacement(value: unknown): value is Placement {
  if (typeof value !== 'object' || value === null) return false
  const { prefixKey, backendId } = value as Partial<Record<keyof Placement, unknown>>
  return isField(prefixKey) && isField(backendId)
}

const isField = (field: unknown): field is string => typeof field === 'string' && field.length > 0 && field.length <= MAX_FIELD_CHARS

/** The isolate's side: what LiveStats gives to and takes from an exchange. */
export interface PlacementPeer {
  takePlacements(): PlacementExchange
  learnPlacements(news: PlacementNews): void
}
