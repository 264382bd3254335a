// The load model: vLLM's continuous batching reduced to what a client can see. At most
// --max-num-seqs generations run at once and the rest wait in vLLM's waiting queue: in arrival
// order, or under --scheduling-policy priority by the request's `priority` (lower first) and then
// arrival, as vLLM's PriorityRequestQueue orders its heap by (priority, arrival_time)
// (v1/core/sched/request_queue.py; the scheduler admits from its head while there is room,
// v1/core/sched/scheduler.py schedule). vLLM also preempts the lowest-priority running request
// when the KV cache runs out; the emulator has no KV-cache limit to run out of, so never does; an admitted request pays prefill for the prompt tokens the prefix cache does not
// hold, and every decode step slows down as the batch grows. With the default options there
// is no limit and no per-token cost, so every request starts at once with fixed ttft and itl.

import type { EmulatorOptions } from './options.ts'
import type { PrefixCache } from './records.ts'
import type { GenerationTracker, Telemetry } from './stats.ts'
import type { PromptPrefix } from './validate.ts'

/** What a sequence learns when the scheduler admits it. */
export type Admission = {
  /** Prompt tokens the prefix cache already held: their prefill costs nothing. */
  cachedTokens: number
}

/** One accepted generation as the scheduler sees it. */
export type Sequence = {
  promptTokens: number
  /** Its place under --scheduling-policy priority: lower is admitted first. */
  priority: number
  prefixes: readonly PromptPrefix[]
  /** Its end, whatever the cause (finish, abort, fault), frees its slot. */
  tracker: GenerationTracker
  /** Starts the generation's clock; called once, at admission. */
  start: (admission: Admission) => void
}

/** The scheduler's part of GET /emulator/stats. */
export type LoadStats = {
  /** Sequences holding a slot now (vllm:num_requests_running). */
  running: number
  /** Sequences in the waiting queue now (vllm:num_requests_waiting). */
  waiting: number
  /** High-water mark of waiting since the last reset. */
  maxWaiting: number
  /** Prompt tokens of the admitted requests, all looked up in the prefix cache. */
  prefixQueryTokens: number
  /** Of those, the tokens found in the cache (their prefill was free). */
  prefixHitTokens: number
  /** Admitted requests whose prompt began with a cached prefix. */
  prefixHitRequests: number
}

/** Without --kv-cache-tokens: kv_cache_usage_perc = running requests / this, at most 1. */
const KV_CACHE_CAPACITY_REQUESTS = 64

type Waiting = { seq: Sequence; queuedAt: number }

export class Scheduler {
  readonly options: () => EmulatorOptions
  readonly telemetry: Telemetry
  readonly prefixCache: PrefixCache
  readonly running = new Set<Sequence>()
  /** The head is admitted first: arrival order, or (priority, arrival) under the priority policy. */
  waiting: Waiting[] = []
  maxWaiting = 0
  /** Set by close(): nothing is admitted any more. */
  stopped = false

  constructor(options: () => EmulatorOptions, telemetry: Telemetry, prefixCache: PrefixCache) {
    this.options = options
    this.telemetry = telemetry
    this.prefixCache = prefixCache
  }

  /** Queues an accepted generation; it starts at once when a slot is free. */
  submit(seq: Sequence): void {
    const now = performance.now()
    seq.tracker.onFinish = () => this.end(seq)
    this.enqueue({ seq, queuedAt: now })
    this.admit(now)
    this.maxWaiting = Math.max(this.maxWaiting, this.waiting.length)
  }

  /**
   * Into the waiting queue: at the end (fcfs), or behind every sequence of the same or a lower
   * priority value (priority): arrivals are in order, so that is (priority, arrival) order.
   */
  private enqueue(entry: Waiting): void {
    if (this.options().schedulingPolicy === 'fcfs') {
      this.waiting.push(entry)
      return
    }
    const behind = this.waiting.findIndex((other) => other.seq.priority > entry.seq.priority)
    if (behind === -1) this.waiting.push(entry)
    else this.waiting.splice(behind, 0, entry)
  }

  /** Admits waiting sequences from the head of the queue while there is room (also after a config change). */
  admit(now = performance.now()): void {
    while (!this.stopped && this.hasRoom()) {
      const next = this.waiting.shift()
      if (next === undefined) return
      this.running.add(next.seq)
      this.telemetry.queueTime.observe((now - next.queuedAt) / 1000)
      const cachedTokens = this.prefixCache.lookupAndStore(next.seq.prefixes)
      this.telemetry.prefixQueries += next.seq.promptTokens
      this.telemetry.prefixHits += cachedTokens
      if (cachedTokens > 0) this.telemetry.prefixHitRequests += 1
      next.seq.start({ cachedTokens })
    }
  }

  /** Extra milliseconds per decode step now: perSeq for every other running sequence. */
  decodeSlowdownMs(perSeq: number): number {
    return perSeq * Math.max(0, this.running.size - 1)
  }

  /**
   * vllm:kv_cache_usage_perc, 0..1. With a capacity in tokens: the prompt and generated tokens
   * of the running sequences over it. Prefixes cached for finished requests do not count, as in
   * vLLM, where such blocks sit evictable in the free queue. Without one: running / 64.
   */
  kvCacheUsage(): number {
    const capacity = this.options().kvCacheTokens
    if (capacity === null) return Math.min(1, this.running.size / KV_CACHE_CAPACITY_REQUESTS)
    let held = 0
    for (const seq of this.running) held += seq.promptTokens + seq.tracker.tokens
    return Math.min(1, held / capacity)
  }

  load(): LoadStats {
    const { prefixQueries, prefixHits, prefixHitRequests } = this.telemetry
    return {
      running: this.running.size,
      waiting: this.waiting.length,
      maxWaiting: this.maxWaiting,
      prefixQueryTokens: prefixQueries,
      prefixHitTokens: prefixHits,
      prefixHitRequests,
    }
  }

  /** POST /emulator/reset: the high-water mark restarts from the queue as it is. */
  reset(): void {
    this.maxWaiting = this.waiting.length
  }

  /** The engine died: every waiting sequence starts now, whatever the limit, so that each fails at once. */
  admitAllNow(): void {
    const waiting = this.waiting
    this.waiting = []
    for (const { seq } of waiting) {
      this.running.add(seq)
      seq.start({ cachedTokens: 0 })
    }
  }

  /** The emulator is closing: admit nothing more (the waiting clients are being disconnected). */
  stop(): void {
    this.stopped = true
  }

  private hasRoom(): boolean {
    const limit = this.options().maxNumSeqs
    return limit === null || this.running.size < limit
  }

  /** A sequence ended: a waiting one leaves the queue, a running one frees its slot. */
  private end(seq: Sequence): void {
    if (this.running.delete(seq)) {
      this.admit()
      return
    }
    this.waiting = this.waiting.filter((entry) => entry.seq !== seq)
  }
}
