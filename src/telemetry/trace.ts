import { outcomeOf, type EndReason } from '../ending.ts'
import type { HedgeWinner, RequestRecord } from './record.ts'

/**
 * What the relay tells about a request as it happens. Every method is cheap and idempotent
 * where it must be: the relay calls them on its hot path.
 */
export interface RelayObserver {
  /** A backend was asked (failover asks again). */
  attemptStarted(backendId: string): void
  /** The first reasoning or content token arrived from the backend. */
  firstTokenArrived(): void
  /** The client has taken the write that carried the first token. */
  firstTokenDelivered(): void
  /** A hedge was started beside the first backend (its attemptStarted follows). */
  hedgeStarted?(): void
  /** The hedge race is decided: `backendId` (the primary or the hedge) sent the first data event. */
  hedgeDecided?(won: HedgeWinner, backendId: string): void
  /** Every backend was full: the request now waits in the edge queue for a slot, at most `deadlineMs`. */
  enteredEdgeQueue?(deadlineMs: number): void
  /** The request waited `ms` at the edge for a free slot before a backend was asked (summed if told twice). */
  waitedAtEdge?(ms: number): void
}

export interface TraceIdentity {
  model: string
  keyId: string | null
}

/**
 * The timeline of one request, from its arrival to its end, turned into one RequestRecord by
 * `finish` (once; later calls are ignored). Times are Date.now() values: in workerd the clock
 * moves at I/O, which is exactly when these events happen.
 */
export class RequestTrace implements RelayObserver {
  readonly startedAt: number
  #identity: TraceIdentity
  #backend: string | null = null
  #attempts = 0
  #headersAt: number | null = null
  #firstTokenAt: number | null = null
  #deliveredAt: number | null = null
  #deliveredAtEnd = false
  #completionTokens = 0
  #hedged = false
  #hedgeWon: HedgeWinner | null = null
  #edgeWaitMs = 0
  #atEdge: number | null = null
  #record: RequestRecord | null = null
  #onFinish: (record: RequestRecord) => void

  constructor(identity: TraceIdentity, onFinish: (record: RequestRecord) => void, startedAt = Date.now()) {
    this.#identity = identity
    this.#onFinish = onFinish
    this.startedAt = startedAt
  }

  attemptStarted(backendId: string): void {
    this.#backend = backendId
    this.#attempts++
  }

  hedgeStarted(): void {
    this.#hedged = true
  }

  hedgeDecided(won: HedgeWinner, backendId: string): void {
    this.#hedgeWon = won
    // Both were asked; the record names the one that served.
    this.#backend = backendId
  }

  /**
   * Time spent in the edge queue (a full fleet) before a backend was asked, or before the request
   * was refused after waiting. Counted apart: it is no part of the backend's time to first token,
   * but the client waited it, so it stays in `ttftClientMs` and `headersMs`.
   */
  enteredEdgeQueue(deadlineMs: number): void {
    this.#atEdge = deadlineMs
  }

  /** In the edge queue now (it entered and has not yet left it: granted, refused, gone): the most it may wait there, in ms; else null. */
  get waitingAtEdge(): number | null {
    return this.#atEdge
  }

  waitedAtEdge(ms: number): void {
    this.#atEdge = null
    if (Number.isFinite(ms) && ms > 0) this.#edgeWaitMs += ms
  }

  firstTokenArrived(): void {
    this.#firstTokenAt ??= Date.now()
  }

  firstTokenDelivered(): void {
    if (this.#firstTokenAt !== null) this.#deliveredAt ??= Date.now()
  }

  /**
   * A non-streamed answer: its first token reaches the client with the whole response, so it is
   * timed by the same clock reading as the end (two readings could differ by a millisecond).
   */
  firstTokenDeliveredAtEnd(): void {
    if (this.#firstTokenAt !== null) this.#deliveredAtEnd = true
  }

  /** Whether any backend was asked: a request that failed before that was refused. */
  get askedBackend(): boolean {
    return this.#attempts > 0
  }

  headersReady(): void {
    this.#headersAt ??= Date.now()
  }

  completionTokens(count: number): void {
    this.#completionTokens = count
  }

  /** Ends the trace and hands its record on; returns it (or the earlier one if already finished). */
  finish(reason: EndReason, status: number, now = Date.now()): RequestRecord {
    if (this.#record) return this.#record
    const outcome = outcomeOf(reason)
    this.#headersAt ??= now
    if (this.#deliveredAtEnd) this.#deliveredAt ??= now
    const since = (at: number | null) => (at === null ? null : at - this.startedAt)
    const tokens = this.#completionTokens
    const decodeMs = this.#firstTokenAt === null ? 0 : now - this.#firstTokenAt
    this.#record = {
      endedAt: now,
      model: this.#identity.model,
      keyId: this.#identity.keyId,
      backend: outcome === 'refused' ? null : this.#backend,
      reason,
      outcome,
      status,
      attempts: outcome === 'refused' ? 0 : this.#attempts,
      headersMs: since(this.#headersAt),
      edgeWaitMs: this.#edgeWaitMs,
      // The backend's own time: the wait at the edge happened before it was asked.
      ttftBackendMs: this.#firstTokenAt === null ? null : Math.max(0, this.#firstTokenAt - this.startedAt - this.#edgeWaitMs),
      ttftClientMs: since(this.#deliveredAt),
      totalMs: now - this.startedAt,
      completionTokens: tokens,
      decodeTokensPerS: tokens >= 2 && decodeMs > 0 ? ((tokens - 1) * 1000) / decodeMs : null,
      hedged: this.#hedged,
      hedgeWon: this.#hedgeWon,
    }
    this.#onFinish(this.#record)
    return this.#record
  }
}
