// What this isolate last heard from each key's limiter, to decide whether a request may start its
// backend call while the limiter decides (speculative admission, docs/rate-limits.md). The limiter
// stays the only arbiter: this memory only chooses between "call the backend now, abort it if
// refused" and "wait for the answer first". A wrong guess costs one backend call aborted at once.

import type { LimitView } from './ledger.ts'

/**
 * "Clear headroom": the last answer this isolate got for the key is at most HEADROOM_MAX_AGE_MS
 * old, it admitted its request, and after this isolate's still-undecided speculative requests and
 * this one, at least HEADROOM_SHARE of each limit (requests, tokens, stream slots) and at least one
 * of each is still free by that answer. The share is the margin for what other isolates may have
 * taken since: a key close to any limit waits for its answers, as without speculation. A key that
 * may be paused for slow requests (`mayPause`, src/limits/pause.ts) never has clear headroom: its
 * next request could be the first one its pause refuses, and a paused key's request must not reach
 * a backend even for the round trip a refused speculation costs.
 *
 * A token budget (src/limits/budget.ts) counts like a limit too: after this isolate's undecided
 * speculative requests and this one, at least one token of each budget, and the smaller of
 * HEADROOM_SHARE of the budget and the key's tokens-per-minute limit, must still be left by the
 * answer. The margin is what other isolates may have taken since the answer (at most 10 s ago),
 * and every admission reserves its tokens against the per-minute limit and the budget alike, so
 * within any minute they cannot have taken more than that limit: a key near the end of its budget
 * still speculates while the per-minute limit says it cannot spend the rest before the answer, and
 * waits for its answers once it could.
 */
export const HEADROOM_SHARE = 0.25
export const HEADROOM_MAX_AGE_MS = 10_000
const MAX_KEYS = 10_000

interface Memory {
  view: LimitView
  at: number
  /** Speculative requests of this isolate whose answers have not come back. */
  pendingRequests: number
  pendingTokens: number
}

const byKey = new Map<string, Memory>()

/** A speculative request's claim on the remembered headroom, given back once its answer came. */
export interface HeadroomClaim {
  release(): void
}

/**
 * Claims headroom for a request that may use `reserveTokens` tokens, or returns null when the key
 * has no clear headroom (then the request waits for its admission).
 */
export function claimHeadroom(keyId: string, reserveTokens: number, now = Date.now()): HeadroomClaim | null {
  const memory = byKey.get(keyId)
  if (!memory || now - memory.at > HEADROOM_MAX_AGE_MS) return null
  const { requests, tokens, streams, mayPause } = memory.view
  if (!streams || mayPause === true) return null
  const requestsLeft = requests.remaining - memory.pendingRequests - 1
  const tokensLeft = tokens.remaining - memory.pendingTokens - reserveTokens
  const streamsLeft = streams.remaining - memory.pendingRequests - 1
  if (!clear(requestsLeft, requests.limit) || !clear(tokensLeft, tokens.limit) || !clear(streamsLeft, streams.limit)) return null
  for (const budget of memory.view.budgets ?? []) {
    const left = budget.remaining - memory.pendingTokens - reserveTokens
    if (left < 1 || left < Math.min(budget.limit * HEADROOM_SHARE, tokens.limit)) return null
  }
  memory.pendingRequests++
  memory.pendingTokens += reserveTokens
  let released = false
  return {
    release() {
      if (released) return
      released = true
      memory.pendingRequests--
      memory.pendingTokens -= reserveTokens
    },
  }
}

function clear(left: number, limit: number): boolean {
  return left >= 1 && left >= limit * HEADROOM_SHARE
}

/** Remembers the limiter's latest answer for the key (admitted or not). */
export function rememberDecision(keyId: string, admitted: boolean, view: LimitView, now = Date.now()): void {
  const memory = byKey.get(keyId)
  // A refusal leaves no headroom whatever its view says (a revoked key, a per-IP limit, a pause).
  const seen = admitted ? view : { ...view, streams: undefined }
  if (memory) {
    memory.view = seen
    memory.at = now
    return
  }
  if (byKey.size >= MAX_KEYS) byKey.delete(byKey.keys().next().value as string)
  byKey.set(keyId, { view: seen, at: now, pendingRequests: 0, pendingTokens: 0 })
}

/** Forgets the key: the next request waits for its answer (after a failed or timed-out call). */
export function forgetHeadroom(keyId: string): void {
  const memory = byKey.get(keyId)
  if (memory) memory.at = Number.NEGATIVE_INFINITY
}
