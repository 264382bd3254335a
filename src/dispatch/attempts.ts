import { healthCheckTimeoutMs, judgeMissedDeadline, type Blame, type MissedDeadline } from './verdict.ts'
import type { PriorityClass } from '../auth/key-record.ts'
import { ApiError } from '../errors.ts'
import type { BackendCredentials } from '../fleet/access.ts'
import type { LiveStats } from '../fleet/live-stats.ts'
import type { BackendRecord } from '../fleet/records.ts'
import type { Candidate } from '../fleet/select.ts'
import type { SlotClaim, SlotLedger } from '../fleet/slots.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { readContextRefusal, roomLeft } from './context-refusal.ts'
import type { HedgePlan, HedgeWinner } from './hedge.ts'
import { newUpstreamRequestId, openUpstream } from './upstream.ts'
import { clientClosed, UpstreamCall, type UpstreamTimeouts } from './upstream-call.ts'

/** One backend's go at the request: its call (deadlines, abort) and, once accepted, its stream. */
export interface Attempt {
  backend: BackendRecord
  call: UpstreamCall
  upstream: ReadableStream<Uint8Array>
  /** The backend runs without a reasoning parser: the relay splits its content at `</think>`. */
  reasoningInContent: boolean
  /** True once the backend's slot ledger counted more requests than it has sequence slots: this one waits in its queue. */
  queued: Promise<boolean>
}

export interface AttemptOptions {
  clientSignal: AbortSignal
  timeouts: UpstreamTimeouts
  body: Record<string, unknown>
  /** The vLLM key and the Access secrets every backend call carries. */
  credentials: BackendCredentials
  /** The body's max_tokens is the gateway's choice (the key's cap), not the client's. */
  gatewayMaxTokens: boolean
  /** Backends tried at most, the first included. */
  maxAttempts: number
  live: LiveStats
  /** The conversation's prefix key, remembered with the backend that serves it. */
  prefixKey: string | null
  observer?: RelayObserver
  /** A request its backend queued may be hedged (deployment and key allow it). */
  hedging?: boolean
  /** The fleet's slot ledger, or null when off (src/fleet/slots.ts). */
  slots?: SlotLedger | null
  /** The request's priority class, which its leases carry (the ledger keeps slots free of batch work for interactive ones). */
  priority?: PriorityClass
  /** The edge queue granted this request a slot on `backendId`: its first call there holds `claim`, already counted. */
  granted?: { backendId: string; claim: SlotClaim } | null
}

/**
 * Failover across the ranked candidates. A connection failure, a 5xx or 429 from the backend, or a
 * missed deadline the verdict did not lay on the request (src/dispatch/verdict.ts) moves the
 * request to the next candidate, as long as nothing has reached the client (the relay asks through
 * `next`) and the client is still there; a 4xx refusal is the request's own fault and goes back to
 * the client at once. Every outcome feeds the backend's live stats: in flight, time to first
 * token, ejection.
 */
export class UpstreamAttempts {
  /** In ranked order, except that a hedge's backend is moved up to where it was tried. */
  #candidates: Candidate[]
  /** The options, but the body: that one is #body, let go once the answer reached the client. */
  #options: Omit<AttemptOptions, 'body'>
  #tried = 0
  /**
   * The body sent; a refitted max_tokens stays for the attempts after it. Null once an answer
   * reached the client: no attempt opens after that, and a long prompt is not kept for the
   * whole stream (bench/results/memory-retention.md).
   */
  #body: Record<string, unknown> | null
  #refitted = false
  /** A hedge was started (at most one per request). */
  #hedged = false
  /** The backend where this request missed a deadline that nothing explained (see src/dispatch/verdict.ts). */
  #unexplainedMiss: BackendRecord | null = null
  /** Per candidate, the part of its ranked load that is not this isolate's in-flight count. */
  #othersLoad: number[]
  /** When the candidates were ranked: a slot ledger's answer after it is fresher than their load. */
  #rankedAt = Date.now()
  /** The edge queue's lease, until the call it was granted for takes it. */
  #granted: { backendId: string; claim: SlotClaim } | null

  constructor(candidates: readonly Candidate[], { body, ...options }: AttemptOptions) {
    this.#candidates = [...candidates]
    this.#options = options
    this.#body = body
    this.#granted = options.granted ?? null
    this.#othersLoad = candidates.map((candidate) => candidate.load - options.live.of(candidate.backend.id).inFlight)
  }

  /** Opens the first candidate that accepts the request; throws the last failure if none does. */
  async first(): Promise<Attempt> {
    return this.#openNext(null)
  }

  /**
   * After `attempt` failed with `error` before any data reached the client: the next accepted
   * attempt, or null when the failure is final (not retryable, or no candidate left).
   */
  async next(attempt: Attempt, error: unknown): Promise<Attempt | null> {
    const failure = attempt.call.failure(error)
    if (!this.#isBackendFailure(attempt.call, failure)) return null
    this.dropped(attempt, error)
    if (!this.#hasMore() || this.#clientLeft()) return null
    try {
      return await this.#openNext(failure)
    } catch {
      return null
    }
  }

  /** `attempt` failed with `error`: its backend's circuit hears of it (if it was the backend's fault), and it stops. */
  dropped(attempt: Attempt, error: unknown): void {
    if (this.#isBackendFailure(attempt.call, attempt.call.failure(error))) this.#blameBackend(attempt.backend, attempt.call)
    attempt.call.stop('relay_failed')
  }

  /**
   * The backend failed the call: a missed deadline the verdict laid on it (it answered neither a
   * newer request nor its health check) ejects it at once; other failures count toward ejection.
   */
  #blameBackend(backend: BackendRecord, call: UpstreamCall): void {
    // Nothing explained the miss yet: the next backend's answer will (see #judge).
    if (call.stopReason === 'deadline_unexplained') return
    const { circuit } = this.#options.live.of(backend.id)
    if (call.missedDeadline) circuit.eject(Date.now())
    else circuit.failure(Date.now())
  }

  /** The client left: no attempt starts after that. */
  #clientLeft(): boolean {
    return this.#options.clientSignal.aborted
  }

  /** How the engine may hedge this request, or null when hedging is off for it. */
  hedgePlan(): HedgePlan<Attempt> | null {
    if (!this.#options.hedging) return null
    return {
      queued: (attempt) => attempt.queued,
      start: () => this.#startHedge(),
      dropped: (attempt, error) => this.dropped(attempt, error),
      // A primary that lost leaves no TTFT sample: the wait it had is only a lower bound, and taken
      // as a sample it would make a straggler look faster than it is (the ranking would send it more).
      won: (attempt, by: HedgeWinner) => {
        if (this.#hedged) this.#options.observer?.hedgeDecided?.(by, attempt.backend.id)
      },
    }
  }

  /**
   * Opens the first untried candidate that has a free sequence slot as a hedge; null when none
   * starts. So no hedge starts when the fleet is saturated (every candidate full), nor onto a full
   * backend while it is not: hedges queued behind full backends mostly lost the race, and their
   * queued places and in-flight counts pushed other requests onto slower backends. A queued
   * primary holds no sequence slot, so whichever wins, no running generation was doubled.
   */
  async #startHedge(): Promise<Attempt | null> {
    const index = this.#hedgeIndex()
    if (index === null || this.#clientLeft()) return null
    // Moved up to the place it is tried in, so failover goes on from the rest in ranked order.
    const [candidate] = this.#candidates.splice(index, 1) as [Candidate]
    const [othersLoad] = this.#othersLoad.splice(index, 1) as [number]
    this.#candidates.splice(this.#tried, 0, candidate)
    this.#othersLoad.splice(this.#tried, 0, othersLoad)
    const { backend } = candidate
    this.#tried++
    this.#hedged = true
    this.#options.observer?.hedgeStarted?.()
    try {
      const opened = await this.#openOn(backend)
      return 'upstream' in opened ? opened : null
    } catch {
      // A refusal of the request itself: the primary, which sent the same request, will hear it too.
      return null
    }
  }

  /** Candidate `index` is at or over its sequence slots now (its ranked load, with this isolate's in-flight count as it is now). */
  #isFull(index: number): boolean {
    const { backend } = this.#candidates[index] as Candidate
    const stats = this.#options.live.of(backend.id)
    const { ledger } = stats
    const others = ledger && ledger.at >= this.#rankedAt ? ledger.others : (this.#othersLoad[index] ?? 0)
    return others + stats.inFlight >= backend.maxConcurrency
  }

  /** The first untried candidate with a free sequence slot, within the attempts allowed; null: none. */
  #hedgeIndex(): number | null {
    if (!this.#hasMore()) return null
    for (let index = this.#tried; index < this.#candidates.length; index++) if (!this.#isFull(index)) return index
    return null
  }

  #hasMore(): boolean {
    return this.#body !== null && this.#tried < this.#options.maxAttempts && this.#tried < this.#candidates.length
  }

  /** An answer reached the client (UpstreamCall.delivered): no attempt opens after this, so the body goes. */
  #delivered(): void {
    this.#body = null
  }

  async #openNext(previous: ApiError | null): Promise<Attempt> {
    let lastError: unknown = previous
    while (this.#hasMore() && !this.#clientLeft()) {
      const backend = (this.#candidates[this.#tried++] as Candidate).backend
      const opened = await this.#openOn(backend)
      if ('upstream' in opened) return opened
      lastError = opened.failure
    }
    // A grant no call took (the client left first) goes back to the queue now, not at its TTL.
    this.#granted?.claim.release()
    this.#granted = null
    if (this.#clientLeft()) throw clientClosed()
    throw lastError ?? noBackendAvailable()
  }

  /**
   * One backend's answer: the accepted attempt, or its failure when the backend is at fault (the
   * caller tries the next). A refusal that is the request's own is thrown, except vLLM's "max_tokens
   * too large" for a max_tokens the gateway chose, which is retried once here with the room vLLM
   * stated. Every try has its own upstream request id.
   */
  async #openOn(backend: BackendRecord): Promise<Attempt | { failure: ApiError }> {
    for (;;) {
      const body = this.#body
      // Another attempt's answer reached the client while this one was opening (a hedge): none is sent.
      if (body === null) return { failure: noBackendAvailable() }
      const { call, queued } = this.#callFor(backend)
      try {
        const request = { backend, body, credentials: this.#options.credentials, requestId: newUpstreamRequestId() }
        const upstream = await openUpstream(request, call)
        return { backend, call, upstream, reasoningInContent: backend.reasoningParser === 'none', queued }
      } catch (error) {
        call.end()
        const failure = call.failure(error)
        if (this.#isBackendFailure(call, failure)) {
          this.#blameBackend(backend, call)
          return { failure }
        }
        // The backend answered, or the request (or the client) is what failed: not the backend's fault.
        const refitted = this.#refitMaxTokens(failure)
        if (!refitted) throw failure
        this.#body = refitted
      }
    }
  }

  /** The body again with max_tokens = the room vLLM's refusal states, or null when that is not for the gateway to do. */
  #refitMaxTokens(failure: ApiError): Record<string, unknown> | null {
    const body = this.#body
    if (body === null || !this.#options.gatewayMaxTokens || this.#refitted || failure.code !== 'context_length_exceeded') return null
    const refusal = readContextRefusal(failure.message)
    if (refusal?.kind !== 'max_tokens_too_large' || refusal.maxTokens !== body.max_tokens) return null
    const room = roomLeft(refusal)
    if (room < 1) return null
    this.#refitted = true
    if (refusal.promptAtLeast) {
      // vLLM v0.20.2 counts the prompt only up to the context's bound ("at least N"): the room is
      // not stated. Without max_tokens vLLM gives the prompt the rest of the context, which is below
      // the cap that was refused (get_max_tokens).
      const rest = { ...body }
      delete rest.max_tokens
      return rest
    }
    return { ...body, max_tokens: room }
  }

  /** The call to `backend`, counted in flight (and on its slot ledger) until it ends. */
  #callFor(backend: BackendRecord): { call: UpstreamCall; queued: Promise<boolean> } {
    const stats = this.#options.live.of(backend.id)
    this.#options.observer?.attemptStarted(backend.id)
    stats.inFlight++
    const { circuit } = stats
    const sent = circuit.attempt(Date.now())
    const answered = () => {
      sent.answered()
      this.#explainEarlierMiss(backend)
    }
    const claim = this.#grantedClaim(backend) ?? this.#options.slots?.claim(backend.id, this.#options.priority) ?? null
    const queued = claim ? this.#learnCounts(claim, backend, Date.now()) : Promise.resolve(false)
    const { timeouts, credentials } = this.#options
    const call: UpstreamCall = new UpstreamCall(this.#options.clientSignal, {
      ...timeouts,
      onHeaders: answered,
      onFirstEvent: (ms) => {
        const now = Date.now()
        stats.observeTtft(ms, now)
        circuit.reached('first_event', call.sentAt)
        circuit.success(now)
        if (this.#options.prefixKey !== null) this.#options.live.remember(this.#options.prefixKey, backend.id)
      },
      onEnd: () => {
        stats.inFlight--
        claim?.release()
        sent.ended()
      },
      onDelivered: () => this.#delivered(),
      judge: (stage) =>
        this.#judge(backend, {
          backend,
          circuit,
          stage,
          sentAt: call.sentAt,
          credentials,
          checkTimeoutMs: healthCheckTimeoutMs(timeouts.headersMs),
        }),
    })
    return { call, queued }
  }

  /** The edge queue's lease if it was granted on `backend` and no call holds it yet. */
  #grantedClaim(backend: BackendRecord): SlotClaim | null {
    const granted = this.#granted
    if (granted?.backendId !== backend.id) return null
    this.#granted = null
    return granted.claim
  }

  /**
   * The verdict on a missed deadline, with what this request saw elsewhere: a second miss that
   * nothing explains, after one on another backend, is the request's own (slow everywhere).
   */
  async #judge(backend: BackendRecord, missed: MissedDeadline): Promise<Blame> {
    const blame = await judgeMissedDeadline(missed)
    if (blame !== 'unexplained') return blame
    if (this.#unexplainedMiss && this.#unexplainedMiss !== backend) {
      this.#unexplainedMiss = null
      return 'request'
    }
    this.#unexplainedMiss = backend
    return blame
  }

  /** `answeredBy` answered this request promptly where another backend missed it unexplained: that one was at fault. */
  #explainEarlierMiss(answeredBy: BackendRecord): void {
    const missed = this.#unexplainedMiss
    if (!missed || missed === answeredBy) return
    this.#unexplainedMiss = null
    this.#options.live.of(missed.id).circuit.eject(Date.now())
  }

  /**
   * Feeds the ledger's answer to a claim sent at `sentAt` into every backend's live stats (the
   * other isolates' share of each count), and tells whether `backend` had more requests than slots.
   */
  async #learnCounts(claim: SlotClaim, backend: BackendRecord, sentAt: number): Promise<boolean> {
    const counts = await claim.counted
    if (counts === null) return false
    const now = Date.now()
    for (const [id, count] of Object.entries(counts)) {
      const stats = this.#options.live.of(id)
      stats.observeLedger(count, stats.inFlightAt(sentAt), now)
    }
    return (counts[backend.id] ?? 0) > backend.maxConcurrency
  }

  /** Whether the failure says something about the backend (so another one may do better). */
  #isBackendFailure(call: UpstreamCall, failure: ApiError): boolean {
    if (call.stopReason === 'client_gone' || call.stopReason === 'request_too_slow') return false
    return failure.status >= 500 || failure.status === 429
  }
}

function noBackendAvailable(): ApiError {
  return new ApiError(503, 'No backend can take the request.', { code: 'no_backend_available' })
}

/**
 * A backend's error event that came before any data reached the client: failover may still
 * replace it; if nothing does, the event (`data`, as the backend sent it) ends the stream.
 */
export class ErrorEventBeforeData extends Error {
  readonly error: ApiError
  readonly data: string

  constructor(error: ApiError, data: string) {
    super(error.message)
    this.error = error
    this.data = data
  }
}
