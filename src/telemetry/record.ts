// What the gateway records about each request it relays (never the prompt, the completion or the
// key itself: the key id is a public identifier).

import type { EndReason, Outcome } from '../ending.ts'

export { OUTCOMES, type EndReason, type Outcome } from '../ending.ts'

export interface RequestRecord {
  /** When the request ended (ms since the epoch): the minute it is counted in. */
  endedAt: number
  model: string
  keyId: string | null
  /** The backend that served (or last failed) it; null when refused before any backend. */
  backend: string | null
  /** Why it ended (src/ending.ts); `outcome` is the coarse group /metrics counts. */
  reason: EndReason
  outcome: Outcome
  status: number
  /** Backends tried: 1 without failover, 0 when refused. */
  attempts: number
  /** From the request's arrival until its response headers were ready (any edge wait included). */
  headersMs: number | null
  /**
   * Time waiting at the edge for a free slot while the whole fleet was full (the edge queue), before
   * a backend was asked or the request was refused; 0 when it did not wait. Records sent before the
   * edge queue lack it: read an absent value as 0.
   */
  edgeWaitMs: number
  /**
   * The backend's time to first token: from arrival until the first reasoning or content token
   * arrived from the backend, less `edgeWaitMs` (the backend had not been asked yet).
   */
  ttftBackendMs: number | null
  /** From arrival until that token had been taken by the client: what the client saw, edge wait included. */
  ttftClientMs: number | null
  totalMs: number
  completionTokens: number
  /** Completion tokens after the first, per second after the first token; null below 2 tokens. */
  decodeTokensPerS: number | null
  /** A second backend was asked because the slot ledger showed the first queued (hedged first tokens). */
  hedged: boolean
  /** Which of the two sent the first data event; null when not hedged or neither did. */
  hedgeWon: HedgeWinner | null
}

/** Which attempt of a hedged request sent the first data event. */
export type HedgeWinner = 'primary' | 'hedge'
