import { KEEPALIVE_FRAME, PROBE_FRAME } from './sse.ts'

// The one writer of every event stream the gateway sends a client: the API relay and the
// browser stream sessions. It owns the byte pipe, backpressure, the keep-alive and noticing that
// the client has gone.

/**
 * Silence after which a probe comment is written. workerd tells a Worker that its client left
 * only when the Worker next writes, so without a write nobody would notice a client that hung up
 * while its request waits in a backend's queue or in a pause between tokens (the keep-alive comes
 * every 15 s). A probe costs one tiny write per second of silence; SSE clients ignore comments.
 */
export const GONE_CLIENT_PROBE_MS = 1_000

/**
 * What a client that does not take its writes gets: `wait` holds the producer back (the API relay:
 * the backend slows down with it); `drop` cuts the connection (stream sessions: the browser's
 * EventSource reconnects and resumes from the last event it has).
 */
export type SlowClientPolicy = 'wait' | 'drop'

export interface ClientWriterOptions {
  keepAliveMs: number
  slowClient: SlowClientPolicy
  /** Writes the client has not taken yet before the policy applies. */
  maxUntaken: number
  /** Runs once when the client is gone (it left, or `drop` cut it off); not after `close`. */
  onGone: () => void
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
  #timer: ReturnType<typeof setTimeout>

  constructor(options: ClientWriterOptions) {
    // workerd's native byte pipe: a written chunk goes to the client without JS stream queueing.
    const { readable, writable } = new IdentityTransformStream()
    this.body = readable
    this.#writer = writable.getWriter()
    this.#options = options
    this.#writer.closed.catch(this.#gone)
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

  /** Cuts the stream off (the client sees a broken connection, not a clean end). */
  abort(): void {
    if (!this.#stop()) return
    this.#writer.abort().catch(() => {})
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

  #nextTickMs(): number {
    const now = Date.now()
    const probeIn = this.#lastWriteAt + GONE_CLIENT_PROBE_MS - now
    const keepAliveIn = this.#lastKeepAliveAt + this.#options.keepAliveMs - now
    return Math.max(1, Math.min(probeIn, keepAliveIn))
  }

  // Lazily re-armed: it wakes at most once per probe interval and writes only after real silence.
  #tick = (): void => {
    if (!this.#open) return
    const now = Date.now()
    if (now - this.#lastKeepAliveAt >= this.#options.keepAliveMs) this.write(KEEPALIVE_FRAME)
    else if (now - this.#lastWriteAt >= GONE_CLIENT_PROBE_MS) this.#write(PROBE_FRAME)
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
