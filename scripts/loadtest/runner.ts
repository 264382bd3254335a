// Runs the load: `requests` requests in all, split into `runs` runs one after another, each with
// at most `concurrency` in flight. Bounded by construction: exactly `requests` requests, each with
// its own timeout (client.ts), so the whole test ends.
import type { RequestOutcome } from './client.ts'
import type { ProgressState } from './progress.ts'
import { summarizeRun, type RunSummary } from './stats.ts'

export interface Plan {
  concurrency: number
  /** Requests in all, over every run. */
  requests: number
  runs: number
}

/** `requests` split over `runs` as evenly as can be, the earlier runs taking one more: 20 over 3 is 7, 7, 6. */
export function requestsPerRun(requests: number, runs: number): number[] {
  return Array.from({ length: runs }, (_, index) => Math.floor(requests / runs) + (index < requests % runs ? 1 : 0))
}

export async function runLoad(
  plan: Plan,
  send: () => Promise<RequestOutcome>,
  onProgress: (state: ProgressState) => void,
): Promise<RunSummary[]> {
  const summaries: RunSummary[] = []
  const counts = requestsPerRun(plan.requests, plan.runs)
  for (let run = 1; run <= plan.runs; run++) {
    const requests = counts[run - 1] ?? 0
    let started = 0
    let errors = 0
    const outcomes: RequestOutcome[] = []
    const report = () => onProgress({ run, runs: plan.runs, done: outcomes.length, total: requests, errors })
    report()
    const startedAt = performance.now()
    // Each worker keeps one request in flight: a new one starts the moment one ends, as a fixed
    // number of users would, which is what --concurrency means.
    const worker = async () => {
      while (started < requests) {
        started++
        const outcome = await send()
        outcomes.push(outcome)
        if (!outcome.ok) errors++
        report()
      }
    }
    await Promise.all(Array.from({ length: Math.min(plan.concurrency, requests) }, worker))
    summaries.push(summarizeRun(run, outcomes, performance.now() - startedAt))
  }
  return summaries
}
