import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { beginAdmission, type PendingAdmission } from '../limits/admit.ts'
import type { ChatRequestHold } from '../relay/chat-relay.ts'

/**
 * Admits a prepared request under its key's limits, for every route on the chat path. While the
 * key has clear headroom the backend call starts as the limiter decides (speculative admission,
 * docs/rate-limits.md): the hold then carries the pending decision, which relayChat awaits before
 * it writes anything. Otherwise this waits for the decision, as a refusal must come first.
 */
export async function admitChatRequest(c: Context<AppEnv>, hold: ChatRequestHold, reserveTokens: number): Promise<void> {
  const pending = beginAdmission(c, reserveTokens)
  if (pending.speculative) hold.admitting = speculate(hold, pending)
  else hold.admission = await pending.decided
}

/**
 * The admission, held by the request once decided. A request that ended before its admission came
 * (it failed first) settles the late lease at once: every admitted lease is settled exactly once.
 */
function speculate(hold: ChatRequestHold, pending: PendingAdmission): Promise<void> {
  const admitting = pending.decided.then((admission) => {
    hold.admission = admission
    if (hold.ended) admission.settle(null, hold.endReason ?? undefined)
  })
  // relayChat awaits it; a request that failed before it did must not leave a rejection unhandled.
  admitting.catch(() => {})
  return admitting
}
