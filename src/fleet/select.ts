// Which backends may serve a request, and in what order to try them. Pure: the fleet, its last
// health snapshot and this isolate's live stats (with the slot ledger's last counts) in, an
// ordered candidate list out.
import type { PriorityClass } from '../auth/key-record.ts'
import { slotLimit } from './edge-queue.ts'
import type { BackendLiveStats } from './live-stats.ts'
import type { BackendRecord, HealthSnapshot } from './records.ts'

export type RoutingPolicy = 'smart' | 'weighted_random' | 'round_robin'

export interface SelectionInput {
  backends: readonly BackendRecord[]
  health: HealthSnapshot | null
  stats: (id: string) => BackendLiveStats
  /** Identifies the conversation's shared prompt prefix (see prefixKeyOf); null: none. */
  prefixKey: string | null
  /** The backend this isolate last sent the conversation to, if it remembers one. */
  recall?: (prefixKey: string) => string | undefined
  now: number
  options: SelectionOptions
  /** The request's priority class: how full a backend may be for it (slotLimit); absent: standard. */
  priority?: PriorityClass
}

export interface SelectionOptions {
  policy: RoutingPolicy
  /** A snapshot older than this is ignored (the probe runs every minute). */
  healthMaxAgeMs: number
  /** The slot ledger's last count of a backend is trusted this long (then: this isolate's own count). */
  loadMaxAgeMs: number
  /** Prefix affinity holds while the preferred backend's load is within this factor of the mean. */
  affinityLoadBound: number
  /** TTFT assumed for a backend with no recent sample (ms). */
  defaultTtftMs: number
}

export interface Candidate {
  backend: BackendRecord
  /**
   * Requests there now (running plus queued), estimated: the other isolates' count as the slot
   * ledger's last answer gave it plus this isolate's own now; else this isolate's own in flight plus
   * the queue of the cron snapshot (see loadOf).
   */
  load: number
}

let roundRobinTurn = 0

/**
 * Passive signals (this isolate's ejections, and stalls) may take at most this share of the
 * backends the health probe calls up out of rotation at once. Past it the gateway is in panic mode,
 * as Envoy below its healthy panic threshold (50% by default): every such backend is ranked as if
 * no passive signal had spoken. So at least half of what the probe sees up always takes traffic,
 * and a fleet-wide slowdown does not pile every request onto the few backends that look best. Why
 * half: when more than half a fleet fails or stalls at once, the cause is more likely shared (an
 * overload, a slow network, the gateway's own view) than half the GPUs breaking together, and
 * sending all traffic to the rest would overload it in turn; with the local default of two
 * backends, one may still be out.
 */
export const MAX_EJECTED_SHARE = 0.5

/**
 * Orders the backends that can take the request: never a full one (at its class's slotLimit),
 * never one the health probe calls down while the probe calls another up, never an ejected one;
 * draining ones after every active one, and stalled ones after all. Ejections and stalls count only
 * while they take at most MAX_EJECTED_SHARE of the probed-up fleet out (panic mode past it). An
 * empty list means the fleet is full for this request: it waits in the edge queue for a slot on
 * one of `rankForQueue`'s backends.
 */
export function rankBackends(input: SelectionInput): Candidate[] {
  return rank(input, true)
}

/** The same order over every backend in rotation, full ones included: what a request waiting at the edge may take. */
export function rankForQueue(input: SelectionInput): Candidate[] {
  return rank(input, false)
}

function rank(input: SelectionInput, withRoomOnly: boolean): Candidate[] {
  // Stalled: a request unanswered past stallMs, nothing newer answered (see CircuitBreaker.stalled).
  const stalled = new Set(input.backends.filter((backend) => input.stats(backend.id).circuit.stalled(input.now)))
  const { inRotation, last } = rotation(input, stalled)
  const eligible = inRotation.map((backend) => ({ backend, load: loadOf(backend, input) }))
  const open = withRoomOnly ? eligible.filter((candidate) => !isFullFor(candidate, input)) : eligible
  const active = open.filter((candidate) => candidate.backend.state === 'active')
  const draining = open.filter((candidate) => candidate.backend.state === 'draining')
  const ranked = [...order(active, input), ...order(draining, input)]
  const goesLast = (candidate: Candidate) => last.has(candidate.backend)
  return [...ranked.filter((candidate) => !goesLast(candidate)), ...ranked.filter(goesLast)]
}

/**
 * Full for this request: as many requests as its class may find there (slotLimit), so it waits at
 * the edge instead, where every isolate's requests leave in one order. A stalled backend too (its
 * API server answers nothing newer): its count is requests it really holds. Before the edge queue a
 * stalled backend was never called full, so that an API server lagging for everyone could not make
 * the whole fleet answer 503; now a full fleet queues instead, and the exception sent every request
 * of a burst past the queue into one vLLM queue (488 waiting there in npm run bench:burst).
 */
function isFullFor(candidate: Candidate, input: SelectionInput): boolean {
  const { backend, load } = candidate
  return load >= slotLimit(backend.maxConcurrency, input.priority ?? 'standard')
}

/**
 * The backends that take traffic now, and those of them to try last. Those the health probe does
 * not call down (all of them when it calls every one down: its snapshot may be a minute old, and a
 * request to a dead backend fails fast, where a 503 from a stale record would be the gateway's own
 * outage); less the ones this isolate ejected, and with the stalled ones (a request unanswered past
 * stallMs, nothing newer answered) last, while both together are within the bound. Past the bound:
 * all of them, in plain order.
 */
function rotation(
  input: SelectionInput,
  stalled: ReadonlySet<BackendRecord>,
): { inRotation: BackendRecord[]; last: ReadonlySet<BackendRecord> } {
  const probedUp = input.backends.filter((backend) => freshHealth(backend.id, input)?.healthy !== false)
  const up = probedUp.length > 0 ? probedUp : [...input.backends]
  const ejected = new Set(up.filter((backend) => !input.stats(backend.id).circuit.allows(input.now)))
  const last = new Set(up.filter((backend) => !ejected.has(backend) && stalled.has(backend)))
  if (ejected.size + last.size > Math.floor(up.length * MAX_EJECTED_SHARE)) return { inRotation: up, last: new Set() }
  return { inRotation: up.filter((backend) => !ejected.has(backend)), last }
}

function order(candidates: Candidate[], input: SelectionInput): Candidate[] {
  if (candidates.length <= 1) return candidates
  const { policy } = input.options
  if (policy === 'round_robin') {
    const start = roundRobinTurn++ % candidates.length
    return [...candidates.slice(start), ...candidates.slice(0, start)]
  }
  if (policy === 'weighted_random') return weightedShuffle(candidates)
  // A backend with a free sequence slot starts the request now; a full one queues it behind a
  // whole generation. Free slots first, then the lowest expected time to first token.
  const byCost = [...candidates].sort((a, b) => Number(isFull(a)) - Number(isFull(b)) || expectedTtft(a, input) - expectedTtft(b, input))
  const preferred =
    input.prefixKey === null
      ? null
      : affinityChoice(candidates, input.prefixKey, input.recall?.(input.prefixKey), input.options.affinityLoadBound)
  const affine = preferred && !isStraggler(preferred, candidates, input) ? preferred : null
  return affine ? [affine, ...byCost.filter((candidate) => candidate !== affine)] : byCost
}

/**
 * A preferred backend loses affinity when its median TTFT is over STRAGGLER_FACTOR times a free
 * backend's and at least STRAGGLER_GAP_MS longer. A cached prefix saves one prefill, tens of ms
 * for this model; a backend that much slower to its typical first token (a sick GPU, a slow
 * link) costs more than that on every turn it keeps. Without this, the hash and the remembered
 * placements kept sending a 300 ms straggler its quarter of the conversations at 70% load, when
 * the other three had room. The median, not the mean: a loaded backend's few queued turns (hundreds
 * of ms) lift its mean over the bar while its typical turn is fast; judged by the mean, over 8
 * isolates at 80% load, conversations left their cached backends and p99 TTFT doubled
 * (docs/fleet-experiments.md).
 */
export const STRAGGLER_FACTOR = 3
export const STRAGGLER_GAP_MS = 100

/** Only measured TTFTs count: a backend with none is not judged, nor compared with. */
function isStraggler(preferred: Candidate, candidates: Candidate[], input: SelectionInput): boolean {
  const own = measuredTtft(preferred, input)
  if (own === null) return false
  return candidates.some((candidate) => {
    if (candidate === preferred || isFull(candidate)) return false
    const other = measuredTtft(candidate, input)
    return other !== null && own > other * STRAGGLER_FACTOR && own - other >= STRAGGLER_GAP_MS
  })
}

/** The backend's median TTFT of this isolate's samples when it has enough of them, else null. */
function measuredTtft(candidate: Candidate, input: SelectionInput): number | null {
  const stats = input.stats(candidate.backend.id)
  return stats.ttftSamples(input.now) >= OWN_TTFT_SAMPLES_TRUSTED ? stats.ttftQuantileMs(0.5, input.now) : null
}

function isFull(candidate: Candidate): boolean {
  return candidate.load >= candidate.backend.maxConcurrency
}

function freshHealth(id: string, input: SelectionInput) {
  const snapshot = input.health
  if (!snapshot || input.now - snapshot.at > input.options.healthMaxAgeMs) return null
  return snapshot.backends[id] ?? null
}

/**
 * Requests at the backend: the other isolates' as the slot ledger last counted them (fresh enough),
 * plus this isolate's own now, which it knows exactly. Without a fresh count, this isolate's own in
 * flight plus the queue of the cron snapshot.
 */
function loadOf(backend: BackendRecord, input: SelectionInput): number {
  const stats = input.stats(backend.id)
  const { ledger } = stats
  if (ledger && input.now - ledger.at <= input.options.loadMaxAgeMs) return ledger.others + stats.inFlight
  return stats.inFlight + (freshHealth(backend.id, input)?.waiting ?? 0)
}

/** The straggler rule judges a backend by its median only from this many of this isolate's samples on. */
export const OWN_TTFT_SAMPLES_TRUSTED = 8

/**
 * Expected time to first token: the backend's recent TTFT (this isolate's samples; the default
 * without any), stretched by how full it is, and shared out by weight. Lower is better. A
 * fleet-wide median from KV was measured as an input and removed: it paid nothing beyond the
 * noise (docs/fleet-experiments.md).
 */
function expectedTtft(candidate: Candidate, input: SelectionInput): number {
  const { backend, load } = candidate
  const ttft = input.stats(backend.id).recentTtftMs(input.now) ?? input.options.defaultTtftMs
  return (ttft * (1 + load / backend.maxConcurrency)) / backend.weight
}

/**
 * Prefix affinity: the backend this isolate last sent the conversation to (it holds the prefix in
 * vLLM's cache), else rendezvous hashing, by which every isolate maps a conversation to the same
 * backend without shared state, and a backend leaving moves only its own conversations. Bounded:
 * when the chosen backend has no free sequence slot the request goes by cost instead; so does a
 * hashed (not remembered) choice whose load is above `bound` times the mean (plus one request of
 * slack), so one hot prefix cannot overload a backend.
 */
function affinityChoice(candidates: Candidate[], prefixKey: string, remembered: string | undefined, bound: number): Candidate | null {
  let best: Candidate | null = candidates.find((candidate) => candidate.backend.id === remembered) ?? null
  let bestScore = best ? Number.POSITIVE_INFINITY : -1
  for (const candidate of candidates) {
    const score = rendezvousScore(prefixKey, candidate.backend.id, candidate.backend.weight)
    if (score > bestScore) {
      best = candidate
      bestScore = score
    }
  }
  // Affinity never waits for a slot: a cached prefix saves one prefill (tens of ms), while the
  // queued turn waits for the shortest running generation to end, which took p99 TTFT to 2-3x
  // round robin's in bench:fleet (docs/fleet-experiments.md). With the slot ledger the load is
  // known fleet-wide, so "free" is what all isolates sent, not this isolate's share.
  if (!best || best.load >= best.backend.maxConcurrency) return null
  // A remembered placement holds the whole conversation so far: worth more than the balance the
  // load bound keeps, and every isolate that overrides it sends the next turn's isolates to a
  // backend that no longer holds the latest turn (docs/fleet-experiments.md).
  if (best.backend.id === remembered) return best
  const meanLoad = candidates.reduce((sum, c) => sum + c.load / c.backend.maxConcurrency, 0) / candidates.length
  const ownLoad = best.load / best.backend.maxConcurrency
  return ownLoad <= meanLoad * bound + 1 / best.backend.maxConcurrency ? best : null
}

/** Weighted rendezvous score: -weight / ln(u), with u a hash of (prefix, backend) in (0, 1). */
function rendezvousScore(prefixKey: string, id: string, weight: number): number {
  const u = (mix32(fnv1a(`${prefixKey}|${id}`)) + 0.5) / 4_294_967_296
  return -weight / Math.log(u)
}

function weightedShuffle(candidates: Candidate[]): Candidate[] {
  // Efraimidis-Spirakis: sort by u^(1/weight), a weighted random permutation in one pass.
  return candidates
    .map((candidate) => ({ candidate, key: Math.random() ** (1 / candidate.backend.weight) }))
    .sort((a, b) => b.key - a.key)
    .map(({ candidate }) => candidate)
}

/** 32-bit FNV-1a: fast, stable across isolates, good enough to spread conversation prefixes. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/**
 * MurmurHash3's finalizer: FNV-1a of two strings that differ only at the end differ only in their
 * low bits, which would tie each backend's rendezvous score to its id; this spreads them.
 */
function mix32(hash: number): number {
  let h = hash
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/**
 * The prefix a conversation's turns share: its first message (after the prompt rules, which fold
 * a system prompt into it). Every later turn repeats it, so it names the conversation.
 */
export function prefixKeyOf(messages: readonly { content?: unknown }[]): string | null {
  const first = messages[0]
  if (!first) return null
  const text = typeof first.content === 'string' ? first.content : JSON.stringify(first.content ?? null)
  return fnv1a(text).toString(36)
}
