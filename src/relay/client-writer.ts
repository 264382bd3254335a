import { KEEPALIVE_FRAME, PROBE_FRAME } from './sse.ts'

// The one writer of every response body the gateway streams to a client: the API relay's event
// streams, a stream: false answer committed before it was ready, and the browser stream sessions.
// It owns the byte pipe, backpressure, the keep-alive and noticing that the client has gone.

/**
 * Silence after which a probe is written. workerd tells a Worker that its client left only when
 * the Worker writes to the response (request.signal does not fire for it in workerd, checked
 * with the built Worker under Miniflare and plain `workerd serve`), so without a write nobody
 * would notice a client that hung up while its request waits in a backend's queue or in a pause
 * between tokens (the keep-alive comes every 15 s). A probe costs one tiny write per second of
 * silence; SSE clients ignore comments, JSON parsers whitespace.
 */
export const GONE_CLIENT_PROBE_MS = 1_000

/**
 * A probe's confirmation: one more write this long after it, unless something was written by then.
 * The first write after a client left may still succeed (the socket takes it; the client's reset
 * comes back in answer to it), and only the next one fails. Measured in workerd (under Miniflare
 * and plain `workerd serve`): writes 0.1 s and 0.5 s after the client left succeeded, the next
 * failed. With probes alone, a client that left just before one was noticed a second later, up to
 * 2 s after it left; with the confirmation, within about 1.1 s.
 */
export const GONE_CLIENT_CONFIRM_MS = 100

/**
 * What a client that does not take its writes gets: `wait` holds the producer back (the API relay:
 * the backend slows down with it); `drop` cuts the connection (stream sessions: the browser's
 * EventSource reconnects and resumes from the last event it has).
 */
export type SlowClientPolicy = 'wait' | 'drop'

/** What the writer sends on its own during silence: bytes the client's parser skips. */
export interface IdleFrames {
  keepAlive: string
  probe: string
}

export const SSE_IDLE_FRAMES: IdleFrames = { keepAlive: KEEPALIVE_FRAME, probe: PROBE_FRAME }

/** Before a JSON answer (stream: false committed early): whitespace, which JSON allows before a value. */
export const JSON_IDLE_FRAMES: IdleFrames = { keepAlive: ' ', probe: ' ' }

export interface ClientWriterOptions {
  keepAliveMs: number
  slowClient: SlowClientPolicy
  /** Writes the client has not taken yet before the policy applies. */
  maxUntaken: number
  /** Runs once when the client is gone (it left, or `drop` cut it off); not after `close`. */
  onGone: () => void
  /** SSE comments unless told otherwise. */
  idleFrames?: IdleFrames
  /**
   * Probe at once rather than after a second of silence: the response is committed with nothing
   * to send yet, and the client may have left while it waited for the headers.
   */
  probeAtOnce?: boolean
}

const encoder = new TextEncoder()

/**
 * The response body is a JS ReadableStream the writer enqueues into, with no writable side. The
 * runtime's pump reads it chunk by chunk, pulls when it has written everything queued, and cancels
 * it when the client has gone. Against workerd's IdentityTransformStream it holds 62 kB less
 * process memory per open stream (a native body is pumped through a 64 KiB buffer kept for the
 * whole stream), and each chunk crosses into JS once, as with the JS floor's TransformStream
 * (docs/benchmarks.md, memory per open stream). No queued chunk is pulled early: highWaterMark 0.
 */
const BODY_QUEUE: QueuingStrategy<Uint8Array> = { highWaterMark: 0 }

export class ClientSseWriter {
  readonly body: ReadableStream<Uint8Array>
  #controller!: ReadableStreamDefaultController<Uint8Array>
  #options: ClientWriterOptions
  #open = true
  /** onTaken callbacks, run once the runtime has taken every chunk queued so far. */
  #onTaken: Array<() => void> = []
  /** The runtime has pulled since the last write: it has taken everything. */
  #allTaken = false
  /** Producers held back by backpressure(), released at the same moment, or when the writer stops. */
  #waiting: Array<() => void> = []
  #lastWriteAt = Date.now()
  /** Probes do not count as keep-alives' silence breakers, so KEEPALIVE_INTERVAL_MS keeps its meaning. */
  #lastKeepAliveAt = Date.now()
  /** When the last probe is to be confirmed by one more write; 0: none pending. */
  #confirmAt = 0
  #idle: IdleFrames
  #timer: ReturnType<typeof setTimeout>

  constructor(options: ClientWriterOptions) {
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller
        },
        pull: this.#drained,
        cancel: this.#gone,
      },
      BODY_QUEUE,
    )
    this.#options = options
    this.#idle = options.idleFrames ?? SSE_IDLE_FRAMES
    if (options.probeAtOnce) this.#probe()
    this.#timer = setTimeout(this.#tick, this.#nextTickMs())
  }

  get open(): boolean {
    return this.#open
  }

  /** Writes `text` now, as one chunk; `onTaken` runs when the client's connection has taken it. */
  write(text: string, onTaken?: () => void): void {
    this.#write(text, onTaken)
    this.#lastKeepAliveAt = this.#lastWriteAt
  }

  /**
   * Under the `wait` policy, a promise to await before producing more while the client lags
   * behind by more than `maxUntaken` writes; undefined when there is no need to wait.
   */
  backpressure(): Promise<void> | undefined {
    if (!this.#open || this.#untaken() <= this.#options.maxUntaken) return undefined
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  /**
   * Ends the stream once everything written has gone out. The end waits for the runtime's next
   * pull rather than closing the queue at once: a closed stream is never pulled again, and the
   * pull is what runs the last writes' onTaken.
   */
  close(): void {
    if (!this.#stop()) return
    const end = () => this.#controller.close()
    if (this.#allTaken) end()
    else this.#onTaken.push(end)
  }

  /** Cuts the stream off (the client sees a broken connection, not a clean end); `reason` is for the runtime's log. */
  abort(reason?: Error): void {
    if (this.#stop()) this.#controller.error(reason)
  }

  /**
   * Cuts the stream off once what was written has reached the client's connection, for a failure
   * that must reach the client as a broken response but with its explanation readable: a cut drops
   * what the runtime still holds. The runtime has taken every write when it pulls again, and it
   * hands a taken write to the connection within its next turn: the cut waits for both (without
   * the turn, the SDK tests' clients got the whitespace before the error object and not the object).
   */
  cutAfterSent(reason: Error): void {
    if (!this.#open) return
    const cut = () => setTimeout(() => this.abort(reason), 0)
    if (this.#allTaken) cut()
    else this.#onTaken.push(cut)
  }

  /** Chunks queued that the runtime has not taken yet (each counts 1 against highWaterMark 0). */
  #untaken(): number {
    return -(this.#controller.desiredSize ?? 0)
  }

  #write(text: string, onTaken?: () => void): void {
    if (!this.#open) return
    if (this.#options.slowClient === 'drop' && this.#untaken() >= this.#options.maxUntaken) {
      this.#controller.error(new Error('too slow'))
      this.#gone()
      return
    }
    this.#lastWriteAt = Date.now()
    this.#controller.enqueue(encoder.encode(text))
    this.#allTaken = false
    if (onTaken) this.#onTaken.push(onTaken)
  }

  /** The runtime pulls only once the queue is empty: everything written so far has been taken. */
  #drained = (): void => {
    this.#allTaken = true
    const taken = this.#onTaken
    if (taken.length > 0) {
      this.#onTaken = []
      for (const run of taken) run()
    }
    this.#release()
  }

  #release(): void {
    const waiting = this.#waiting
    if (waiting.length === 0) return
    this.#waiting = []
    for (const resolve of waiting) resolve()
  }

  /** A probe, and one more write due GONE_CLIENT_CONFIRM_MS after it (another probe, unless something else came by then). */
  #probe(): void {
    this.#write(this.#idle.probe)
    this.#confirmAt = this.#lastWriteAt + GONE_CLIENT_CONFIRM_MS
  }

  #nextTickMs(): number {
    const now = Date.now()
    const probeIn = this.#confirmAt !== 0 ? this.#confirmAt - now : this.#lastWriteAt + GONE_CLIENT_PROBE_MS - now
    const keepAliveIn = this.#lastKeepAliveAt + this.#options.keepAliveMs - now
    return Math.max(1, Math.min(probeIn, keepAliveIn))
  }

  // Lazily re-armed: it wakes at most once per probe interval (and once more to confirm a probe)
  // and writes only after real silence.
  #tick = (): void => {
    if (!this.#open) return
    const now = Date.now()
    if (now - this.#lastKeepAliveAt >= this.#options.keepAliveMs) this.write(this.#idle.keepAlive)
    else if (this.#confirmAt !== 0 && now >= this.#confirmAt) {
      // Any write since the confirmation fell due confirms the probe as well.
      if (this.#lastWriteAt < this.#confirmAt) this.#write(this.#idle.probe)
      this.#confirmAt = 0
    } else if (this.#confirmAt === 0 && now - this.#lastWriteAt >= GONE_CLIENT_PROBE_MS) this.#probe()
    this.#timer = setTimeout(this.#tick, this.#nextTickMs())
  }

  /** Returns false when already stopped. */
  #stop(): boolean {
    if (!this.#open) return false
    this.#open = false
    clearTimeout(this.#timer)
    // A stopped writer takes no more writes: nobody waits on it.
    this.#release()
    return true
  }

  #gone = (): void => {
    if (this.#stop()) this.#options.onGone()
  }
}
