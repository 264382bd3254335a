// What the emulator has done since start or the last reset: the counters of
// GET /emulator/stats and the histograms behind GET /metrics. Every generation
// reports through a GenerationTracker, which keeps the bookkeeping in one place.

export type EmulatorStats = {
  /** Every POST under /v1, whatever became of it. */
  requests: number
  /** Streaming responses whose 200 headers were sent. */
  streamsStarted: number
  /** Generations that ran to their natural end ([DONE] or the whole JSON body sent). */
  completed: number
  /** Generations whose client went away first. */
  aborted: number
  /** Generations ended by an injected fault (die_after, error_after). */
  faulted: number
  /** Generations running now (accepted, not yet completed, aborted or faulted). */
  inFlight: number
  /** High-water mark of inFlight since the last reset. */
  maxInFlight: number
  /** Completion tokens actually produced, including those of aborted generations. */
  tokensGenerated: number
  promptTokens: number
  /** Date.now() of the last abort, or null. */
  lastAbortAt: number | null
}

export type FinishedReason = 'stop' | 'length' | 'abort'

export class Histogram {
  readonly bounds: readonly number[]
  counts: number[]
  sum = 0
  count = 0

  constructor(bounds: readonly number[]) {
    this.bounds = bounds
    this.counts = bounds.map(() => 0)
  }

  observe(value: number): void {
    this.sum += value
    this.count += 1
    this.bounds.forEach((bound, index) => {
      if (value <= bound) this.counts[index] = (this.counts[index] ?? 0) + 1
    })
  }

  reset(): void {
    this.counts = this.bounds.map(() => 0)
    this.sum = 0
    this.count = 0
  }
}

// vLLM's own bucket boundaries for these histograms.
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560]
const TOKEN_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]
const REQUEST_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680]

function zeroStats(inFlight: number): EmulatorStats {
  return {
    requests: 0,
    streamsStarted: 0,
    completed: 0,
    aborted: 0,
    faulted: 0,
    inFlight,
    maxInFlight: inFlight,
    tokensGenerated: 0,
    promptTokens: 0,
    lastAbortAt: null,
  }
}

export class Telemetry {
  stats: EmulatorStats = zeroStats(0)
  readonly timeToFirstToken = new Histogram(TTFT_BUCKETS)
  readonly timePerOutputToken = new Histogram(TOKEN_BUCKETS)
  readonly e2eLatency = new Histogram(REQUEST_BUCKETS)
  readonly queueTime = new Histogram(REQUEST_BUCKETS)
  finished: Record<FinishedReason, number> = { stop: 0, length: 0, abort: 0 }
  /** Prompt tokens looked up in the prefix cache, and those found there. */
  prefixQueries = 0
  prefixHits = 0
  /** Admitted requests whose prompt started with a cached prefix. */
  prefixHitRequests = 0
  /** Unix seconds when the metrics were created or reset (prometheus_client's *_created). */
  createdAt = Date.now() / 1000

  reset(): void {
    this.stats = zeroStats(this.stats.inFlight)
    for (const histogram of [this.timeToFirstToken, this.timePerOutputToken, this.e2eLatency, this.queueTime]) histogram.reset()
    this.finished = { stop: 0, length: 0, abort: 0 }
    this.prefixQueries = 0
    this.prefixHits = 0
    this.prefixHitRequests = 0
    this.createdAt = Date.now() / 1000
  }

  /**
   * An accepted generation: it is in flight until its tracker finishes. Its time in the
   * scheduler's waiting queue is observed when the scheduler admits it.
   */
  begin(promptTokens: number, receivedAt: number): GenerationTracker {
    this.stats.inFlight += 1
    this.stats.maxInFlight = Math.max(this.stats.maxInFlight, this.stats.inFlight)
    this.stats.promptTokens += promptTokens
    return new GenerationTracker(this, receivedAt)
  }
}

export type Outcome = FinishedReason | 'fault'

/** One generation's bookkeeping; `finish` runs at most once, whatever calls it. */
export class GenerationTracker {
  readonly telemetry: Telemetry
  readonly receivedAt: number
  tokens = 0
  lastTokenAt: number | null = null
  done = false
  /** Called once when the generation ends, however it ends (the scheduler frees its slot). */
  onFinish: (() => void) | null = null

  constructor(telemetry: Telemetry, receivedAt: number) {
    this.telemetry = telemetry
    this.receivedAt = receivedAt
  }

  /**
   * A token (or one per choice) came out of the "model" at `now` (performance.now() milliseconds). Counted even
   * after `finish`, deliberately: a generator that failed to stop would show in the stats.
   */
  tokenProduced(now: number, count = 1): void {
    // n > 1: one engine step gives `count` tokens at once, timed as one step.
    this.tokens += count
    this.telemetry.stats.tokensGenerated += count
    if (this.lastTokenAt === null) this.telemetry.timeToFirstToken.observe((now - this.receivedAt) / 1000)
    else this.telemetry.timePerOutputToken.observe((now - this.lastTokenAt) / 1000)
    this.lastTokenAt = now
  }

  finish(outcome: Outcome, now: number): void {
    if (this.done) return
    this.done = true
    const { stats } = this.telemetry
    stats.inFlight -= 1
    this.onFinish?.()
    if (outcome === 'fault') {
      stats.faulted += 1
      return
    }
    this.telemetry.finished[outcome] += 1
    this.telemetry.e2eLatency.observe((now - this.receivedAt) / 1000)
    if (outcome === 'abort') {
      stats.aborted += 1
      stats.lastAbortAt = Date.now()
    } else {
      stats.completed += 1
    }
  }
}
