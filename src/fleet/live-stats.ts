// What this isolate sees of each backend while relaying: requests in flight, recent time to first
// token, and its circuit breaker. Per isolate and immediate (no storage); the cron probe's KV
// snapshot and the slot ledger's counts add the fleet-wide view (docs/fleet.md lists how fresh each signal is).
import { CircuitBreaker, DEFAULT_CIRCUIT, type CircuitOptions } from './circuit.ts'
import { PLACEMENTS_PER_EXCHANGE, type Placement, type PlacementExchange, type PlacementNews, type PlacementPeer } from './placements.ts'

/** TTFT samples kept per backend, and how old a sample may be. */
const TTFT_SAMPLES = 32
const TTFT_MAX_AGE_MS = 5 * 60_000
/** In-flight history kept per backend: longer than a ledger count is trusted (3 s), and bounded. */
const IN_FLIGHT_HISTORY_MS = 5_000
const IN_FLIGHT_CHANGES = 1_024

/** The other isolates' requests at a backend (`others`), as its ledger counted them at `at` (Unix ms). */
export interface LedgerCount {
  others: number
  at: number
}

export class BackendLiveStats {
  readonly circuit: CircuitBreaker
  #inFlight = 0
  /**
   * Each change of the in-flight count in the last IN_FLIGHT_HISTORY_MS, oldest first, and the
   * count before the first: what this isolate had at the backend when its slot ledger counted it
   * (inFlightAt), so the ledger's count can be split into this isolate's and the others'.
   */
  #changes: { at: number; count: number }[] = []
  #before = 0
  /** Raw TTFT samples (ms) with their time, oldest first: a sliding window, not a decayed guess. */
  #ttft: { at: number; ms: number }[] = []
  /** The other isolates' requests at the backend as its slot ledger last counted them (src/fleet/slots.ts). */
  #ledger: LedgerCount | null = null

  constructor(circuit: CircuitOptions) {
    this.circuit = new CircuitBreaker(circuit)
  }

  /** Requests in flight from this isolate (`inFlight++` when one starts, `--` when it ends). */
  get inFlight(): number {
    return this.#inFlight
  }

  set inFlight(count: number) {
    const now = Date.now()
    this.#inFlight = Math.max(0, count)
    this.#changes.push({ at: now, count: this.#inFlight })
    let oldest = this.#changes[0]
    while (oldest && (this.#changes.length > IN_FLIGHT_CHANGES || oldest.at < now - IN_FLIGHT_HISTORY_MS)) {
      this.#before = oldest.count
      this.#changes.shift()
      oldest = this.#changes[0]
    }
  }

  /** This isolate's in-flight count at `at` (Unix ms), from the recent history. */
  inFlightAt(at: number): number {
    for (let i = this.#changes.length - 1; i >= 0; i--) {
      const change = this.#changes[i] as { at: number; count: number }
      if (change.at <= at) return change.count
    }
    return this.#before
  }

  /** A claim's answer: the backend held `fleetCount` requests, of which `ownCount` were this isolate's. */
  observeLedger(fleetCount: number, ownCount: number, at: number): void {
    if (this.#ledger && this.#ledger.at > at) return
    this.#ledger = { others: Math.max(0, fleetCount - ownCount), at }
  }

  /** The other isolates' requests at the backend at the last ledger answer, or null before one. */
  get ledger(): LedgerCount | null {
    return this.#ledger
  }

  /** How many recent TTFT samples there are (older ones are dropped). */
  ttftSamples(now: number): number {
    while ((this.#ttft[0]?.at ?? now) < now - TTFT_MAX_AGE_MS) this.#ttft.shift()
    return this.#ttft.length
  }

  observeTtft(ms: number, now: number): void {
    this.#ttft.push({ at: now, ms })
    if (this.#ttft.length > TTFT_SAMPLES) this.#ttft.shift()
  }

  /** Mean of the recent raw TTFT samples, or null when there are none. */
  recentTtftMs(now: number): number | null {
    if (this.ttftSamples(now) === 0) return null
    let sum = 0
    for (const sample of this.#ttft) sum += sample.ms
    return sum / this.#ttft.length
  }

  /** The q-th quantile (0-1, nearest rank) of the recent raw TTFT samples, or null when there are none. */
  ttftQuantileMs(q: number, now: number): number | null {
    if (this.ttftSamples(now) === 0) return null
    const sorted = this.#ttft.map((sample) => sample.ms).sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? null
  }
}

/** Conversation prefixes remembered per isolate (most recent first out when full). */
const AFFINITY_ENTRIES = 10_000

/** The isolate's stats for every backend it has routed to, by backend id. */
export class LiveStats implements PlacementPeer {
  #byBackend = new Map<string, BackendLiveStats>()
  /** Prefix key -> the backend that last served a turn of it, so holds its prefix in cache. */
  #affinity = new Map<string, string>()
  /** This isolate's placements not yet sent to the other isolates (src/fleet/placements.ts). */
  #outbox: Placement[] = []
  /** The last sequence of the fleet's placement log this isolate has seen; 0: none yet. */
  #placementsSeen = 0
  readonly #circuit: CircuitOptions

  constructor(circuit: CircuitOptions = DEFAULT_CIRCUIT) {
    this.#circuit = circuit
  }

  /** A turn of the conversation `prefixKey` was served by backend `id`. */
  remember(prefixKey: string, id: string): void {
    this.#place(prefixKey, id)
    this.#outbox.push({ prefixKey, backendId: id })
    // Oldest first out: a burst beyond one exchange keeps its latest turns.
    if (this.#outbox.length > PLACEMENTS_PER_EXCHANGE) this.#outbox.shift()
  }

  recall(prefixKey: string): string | undefined {
    return this.#affinity.get(prefixKey)
  }

  /** Hands over the placements to send; what an exchange that fails loses is a hint, not state. */
  takePlacements(): PlacementExchange {
    const placements = this.#outbox
    this.#outbox = []
    return { placements, since: this.#placementsSeen }
  }

  /**
   * The other isolates' placements, oldest first, so the latest turn of a conversation wins. One
   * this isolate made while the exchange was on its way can be overwritten by an older one from
   * the answer; its next turn then costs one prefill, which is all a placement is worth.
   */
  learnPlacements(news: PlacementNews): void {
    for (const { prefixKey, backendId } of news.placements) this.#place(prefixKey, backendId)
    this.#placementsSeen = news.seq
  }

  #place(prefixKey: string, id: string): void {
    this.#affinity.delete(prefixKey)
    this.#affinity.set(prefixKey, id)
    if (this.#affinity.size > AFFINITY_ENTRIES) this.#affinity.delete(this.#affinity.keys().next().value as string)
  }

  of(id: string): BackendLiveStats {
    let stats = this.#byBackend.get(id)
    if (!stats) {
      stats = new BackendLiveStats(this.#circuit)
      this.#byBackend.set(id, stats)
    }
    return stats
  }
}

const byOwner = new WeakMap<object, LiveStats>()

/**
 * The isolate's live stats, one set per `owner` (the parsed configuration: a test's changed
 * settings start afresh), with that configuration's circuit options.
 */
export function liveStatsFor(owner: object, circuit: CircuitOptions): LiveStats {
  let stats = byOwner.get(owner)
  if (!stats) {
    stats = new LiveStats(circuit)
    byOwner.set(owner, stats)
  }
  return stats
}
