// An ejected backend's return (src/fleet/circuit.ts): once its cool-down is over, one health check
// decides, never a client's request. Started as a request is ranked, in the background: that
// request is not held up, and the backend stays out until the answer comes.
import type { Background } from '../cache/stale-cache.ts'
import type { BackendCredentials } from '../fleet/access.ts'
import type { LiveStats } from '../fleet/live-stats.ts'
import type { BackendRecord } from '../fleet/records.ts'
import { checkHealth } from './verdict.ts'

export interface RecoveryInput {
  backends: readonly BackendRecord[]
  live: LiveStats
  credentials: BackendCredentials
  timeoutMs: number
  /** The request's waitUntil, so the check outlives the request that started it. */
  background?: Background
}

/** Starts a health check of each ejected backend whose cool-down is over (one at a time per backend). */
export function checkEjectedBackends({ backends, live, credentials, timeoutMs, background }: RecoveryInput): void {
  const now = Date.now()
  for (const backend of backends) {
    const { circuit } = live.of(backend.id)
    if (!circuit.needsCheck(now)) continue
    circuit.checkStarted(now)
    const check = checkHealth(backend, credentials, timeoutMs).then((healthy) => circuit.checked(healthy, Date.now()))
    if (background) background(check)
    else void check
  }
}
