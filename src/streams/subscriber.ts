import { KEEPALIVE_FRAME } from '../relay/sse.ts'
import { eventFrame, retryFrame, type StreamEvent } from './events.ts'

/**
 * Writes not yet taken by a connection before it is dropped. The generation never waits for a
 * slow browser: it is cut off instead, and its EventSource reconnects and resumes from the last
 * event it got, so nothing is lost and memory stays bounded.
 */
const MAX_UNTAKEN_WRITES = 64

const encoder = new TextEncoder()

export interface SubscriberOptions {
  retryMs: number
  keepAliveMs: number
  /** The last event the browser already has: only later ones are sent. */
  afterId: number
  /** Runs once when the connection is gone (the browser left, or it was dropped). */
  onGone: (subscriber: Subscriber) => void
}

/**
 * One EventSource connection to a session. Every write goes straight to workerd's byte pipe in
 * the turn it is made; `send` never sends an event twice, whatever the caller hands it, so a
 * replay followed by live events can neither duplicate nor skip one.
 */
export class Subscriber {
  readonly body: ReadableStream<Uint8Array>
  #writer: WritableStreamDefaultWriter<Uint8Array>
  #options: SubscriberOptions
  #lastId: number
  #open = true
  #untaken = 0
  #lastWriteAt = Date.now()
  #keepAliveTimer: ReturnType<typeof setTimeout>

  constructor(options: SubscriberOptions) {
    const { readable, writable } = new IdentityTransformStream()
    this.body = readable
    this.#writer = writable.getWriter()
    this.#options = options
    this.#lastId = options.afterId
    this.#writer.closed.catch(this.#gone)
    this.#write(retryFrame(options.retryMs))
    this.#keepAliveTimer = setTimeout(this.#keepAlive, options.keepAliveMs)
  }

  get open(): boolean {
    return this.#open
  }

  /**
   * Sends the events after the last one sent, in one write. `onTaken` runs when the browser's
   * connection has taken that write (for the first token's delivery time).
   */
  send(events: readonly StreamEvent[], onTaken?: () => void): void {
    let text = ''
    for (const event of events) {
      if (event.id <= this.#lastId) continue
      text += eventFrame(event)
      this.#lastId = event.id
    }
    if (text !== '') this.#write(text, onTaken)
  }

  /** Closes the connection once everything written has gone out. */
  end(): void {
    if (!this.#open) return
    this.#stop()
    this.#writer.close().catch(() => {})
  }

  #write(text: string, onTaken?: () => void): void {
    if (!this.#open) return
    if (this.#untaken >= MAX_UNTAKEN_WRITES) {
      this.#writer.abort(new Error('too slow')).catch(() => {})
      this.#gone()
      return
    }
    this.#untaken++
    this.#lastWriteAt = Date.now()
    this.#writer.write(encoder.encode(text)).then(() => {
      this.#untaken--
      onTaken?.()
    }, this.#gone)
  }

  // Lazily re-armed: it wakes once per interval at most and writes only after real silence.
  #keepAlive = (): void => {
    if (!this.#open) return
    const silentMs = Date.now() - this.#lastWriteAt
    if (silentMs >= this.#options.keepAliveMs) this.#write(KEEPALIVE_FRAME)
    this.#keepAliveTimer = setTimeout(this.#keepAlive, Math.max(1, this.#options.keepAliveMs - (Date.now() - this.#lastWriteAt)))
  }

  #stop(): void {
    this.#open = false
    clearTimeout(this.#keepAliveTimer)
  }

  #gone = (): void => {
    if (!this.#open) return
    this.#stop()
    this.#options.onGone(this)
  }
}
