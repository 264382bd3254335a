// Runs the load: `runs` runs one after another, each `requests` requests with at most
// `concurrency` in flight. Bounded by construction: requests × runs requests in all, each with
// its own timeout (client.ts), so the whole test ends.
import type { RequestOutcome } from './client.ts'
import type { ProgressState } from './progress.ts'
import { summarizeRun, type RunSummary } from './stats.ts'

export interface Plan {
  concurrency: number
  requests: number
  runs: number
}

export async function runLoad(
  plan: Plan,
  send: () => Promise<RequestOutcome>,
  onProgress: (state: ProgressState) => void,
): Promise<RunSummary[]> {
  const summaries: RunSummary[] = []
  for (let run = 1; run <= plan.runs; run++) {
    let started = 0
    let errors = 0
    const outcomes: RequestOutcome[] = []
    const report = () => onProgress({ run, runs: plan.runs, done: outcomes.length, total: plan.requests, errors })
    report()
    const startedAt = performance.now()
    // Each worker keeps one request in flight: a new one starts the moment one ends, as a fixed
    // number of users would, which is what --concurrency means.
    const worker = async () => {
      while (started < plan.requests) {
        started++
        const outcome = await send()
        outcomes.push(outcome)
        if (!outcome.ok) errors++
        report()
      }
    }
    await Promise.all(Array.from({ length: Math.min(plan.concurrency, plan.requests) }, worker))
    summaries.push(summarizeRun(run, outcomes, performance.now() - startedAt))
  }
  return summaries
}
