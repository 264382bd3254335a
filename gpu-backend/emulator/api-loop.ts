// vLLM's OpenAI-compatible server is one asyncio event loop (entrypoints/openai/api_server.py
// run_server -> serve_http, uvicorn): every route's handler, /health and /metrics included, runs on
// it. When that loop is held up, by synchronous work such as the chat template's render
// (entrypoints/chat_utils.py apply_hf_chat_template, called without an executor from
// serving_engine.py _preprocess_chat) or by falling behind, every request waits at once.
//
// Node's own loop is never blocked here: ApiLoop is a model of vLLM's. A request enters it on
// arrival (server.ts): `apiServerLagMs` late, then in arrival order once no synchronous work holds
// the loop. Synchronous work (`work`) holds it for its duration. The /emulator/* controls are not
// vLLM's and bypass it. With no lag and no work, a request is handled synchronously, as before.

/** The clock and timers, injectable so tests can drive the loop without waiting. */
export type Timers = {
  now: () => number
  /** Runs `run` after `ms`; the function returned cancels it. */
  after: (ms: number, run: () => void) => () => void
}

export const realTimers: Timers = {
  now: () => performance.now(),
  after: (ms, run) => {
    const timer = setTimeout(run, ms)
    return () => clearTimeout(timer)
  },
}

export class ApiLoop {
  readonly timers: Timers
  /** The loop is held by synchronous work until this time (timers.now()). */
  private busyUntil = Number.NEGATIVE_INFINITY
  /** Tasks due to run, waiting for the loop to be free: first in, first run. */
  private ready: (() => void)[] = []
  /** Cancels the timer that drains `ready` when the loop frees up. */
  private wake: (() => void) | null = null
  /** When the last request to enter is let in: a later one is never let in before it. */
  private lastEntryAt = Number.NEGATIVE_INFINITY
  /** Cancels of the timers still pending (lag, off-loop work), for close(). */
  private readonly pending = new Set<() => void>()
  private closed = false
  /** Total ms of synchronous work the loop has been given (tests read it). */
  heldMs = 0

  constructor(timers: Timers = realTimers) {
    this.timers = timers
  }

  /**
   * A request arriving: `task` runs `lagMs` late (the lag in force at arrival stays with the
   * request, as it was already waiting in the loop), never before a request that arrived earlier,
   * then in turn once the loop is free. asyncio runs what is ready first in, first out
   * (base_events.py, BaseEventLoop._run_once pops its _ready deque from the left), so when a
   * lagging loop catches up, its backlog is handled in arrival order: a request arriving after the
   * lag ends waits behind the ones still held, it does not overtake them.
   */
  enter(lagMs: number, task: () => void): void {
    const entryAt = Math.max(this.timers.now() + lagMs, this.lastEntryAt)
    this.lastEntryAt = entryAt
    const wait = entryAt - this.timers.now()
    if (wait > 0) this.later(wait, () => this.whenFree(task))
    else this.whenFree(task)
  }

  /** Runs `task` now if the loop is free and nothing waits before it; else queues it. */
  whenFree(task: () => void): void {
    if (this.closed) return
    if (this.ready.length === 0 && this.timers.now() >= this.busyUntil) {
      task()
      return
    }
    this.ready.push(task)
    this.schedule()
  }

  /** Resolves once the loop is free for this caller (a coroutine resuming on it). */
  free(): Promise<void> {
    return new Promise((resolve) => this.whenFree(resolve))
  }

  /**
   * Synchronous work of `ms` on the loop, in turn: once the loop is free it is held for `ms`,
   * nothing else runs on it meanwhile; resolves when the work is done.
   */
  work(ms: number): Promise<void> {
    return new Promise((resolve) =>
      this.whenFree(() => {
        this.hold(ms)
        this.later(ms, resolve)
      }),
    )
  }

  /** Work off the loop (a thread, another process): only the wait, the loop stays free. */
  offLoop(ms: number): Promise<void> {
    return new Promise((resolve) => this.later(ms, resolve))
  }

  /** The emulator is closing: nothing pending runs any more. */
  close(): void {
    this.closed = true
    for (const cancel of this.pending) cancel()
    this.pending.clear()
    this.wake?.()
    this.wake = null
    this.ready = []
  }

  private hold(ms: number): void {
    if (ms <= 0) return
    this.busyUntil = Math.max(this.timers.now(), this.busyUntil) + ms
    this.heldMs += ms
  }

  private later(ms: number, run: () => void): void {
    if (this.closed) return
    const cancel = this.timers.after(ms, () => {
      this.pending.delete(cancel)
      run()
    })
    this.pending.add(cancel)
  }

  /** Arms one timer for when the loop frees up (or at once, if it is free already). */
  private schedule(): void {
    if (this.wake !== null || this.closed) return
    const delay = Math.max(0, this.busyUntil - this.timers.now())
    this.wake = this.timers.after(delay, () => {
      this.wake = null
      this.drain()
    })
  }

  /** Runs waiting tasks in order while the loop is free; a task that holds the loop stops the rest. */
  private drain(): void {
    while (!this.closed && this.ready.length > 0 && this.timers.now() >= this.busyUntil) {
      const task = this.ready.shift()
      task?.()
    }
    if (this.ready.length > 0) this.schedule()
  }
}
