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

export class ClientSseWriter {
  readonly body: ReadableStream<Uint8Array>
  #writer: WritableStreamDefaultWriter<Uint8Array>
  #options: ClientWriterOptions
  #open = true
  #untaken = 0
  /** The newest write: with IdentityTransformStream it settles once the client has read it. */
  #newest: Promise<void> = Promise.resolve()
  #lastWriteAt = Date.now()
  /** Probes do not count as keep-alives' silence breakers, so KEEPALIVE_INTERVAL_MS keeps its meaning. */
  #lastKeepAliveAt = Date.now()
  /** When the last probe is to be confirmed by one more write; 0: none pending. */
  #confirmAt = 0
  #idle: IdleFrames
  #timer: ReturnType<typeof setTimeout>

  constructor(options: ClientWriterOptions) {
    // workerd's native byte pipe: a written chunk goes to the client without JS stream queueing.
    const { readable, writable } = new IdentityTransformStream()
    this.body = readable
    this.#writer = writable.getWriter()
    this.#options = options
    this.#idle = options.idleFrames ?? SSE_IDLE_FRAMES
    this.#writer.closed.catch(this.#gone)
    if (options.probeAtOnce) this.#probe()
    this.#timer = setTimeout(this.#tick, this.#nextTickMs())
  }

  get open(): boolean {
    return this.#open
  }

  /** Writes `text` now, as one chunk; `onTaken` runs when the client has read it. */
  write(text: string, onTaken?: () => void): void {
    this.#write(text, onTaken)
    this.#lastKeepAliveAt = this.#lastWriteAt
  }

  /**
   * Under the `wait` policy, a promise to await before producing more while the client lags
   * behind by more than `maxUntaken` writes; undefined when there is no need to wait.
   */
  backpressure(): Promise<void> | undefined {
    return this.#open && this.#untaken > this.#options.maxUntaken ? this.#newest : undefined
  }

  /** Ends the stream once everything written has gone out. */
  close(): void {
    if (!this.#stop()) return
    this.#writer.close().catch(() => {})
  }

  /** Cuts the stream off (the client sees a broken connection, not a clean end); `reason` is for the runtime's log. */
  abort(reason?: Error): void {
    if (!this.#stop()) return
    this.#writer.abort(reason).catch(() => {})
  }

  #write(text: string, onTaken?: () => void): void {
    if (!this.#open) return
    if (this.#options.slowClient === 'drop' && this.#untaken >= this.#options.maxUntaken) {
      this.#writer.abort(new Error('too slow')).catch(() => {})
      this.#gone()
      return
    }
    this.#untaken++
    this.#lastWriteAt = Date.now()
    this.#newest = this.#writer.write(encoder.encode(text)).then(() => {
      this.#untaken--
      onTaken?.()
    }, this.#gone)
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
    return true
  }

  #gone = (): void => {
    if (this.#stop()) this.#options.onGone()
  }
}
