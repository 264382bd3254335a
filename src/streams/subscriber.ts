import { ClientSseWriter } from '../relay/client-writer.ts'
import { eventFrame, retryFrame, type StreamEvent } from './events.ts'

/**
 * Writes not yet taken by a connection before it is dropped. The generation never waits for a
 * slow browser: it is cut off instead, and its EventSource reconnects and resumes from the last
 * event it got, so nothing is lost and memory stays bounded.
 */
const MAX_UNTAKEN_WRITES = 64

export interface SubscriberOptions {
  retryMs: number
  keepAliveMs: number
  /** The last event the browser already has: only later ones are sent. */
  afterId: number
  /** Runs once when the connection is gone (the browser left, or it was dropped). */
  onGone: (subscriber: Subscriber) => void
}

/**
 * One EventSource connection to a session, on the gateway's one client writer (keep-alive, the
 * gone client, and the `drop` policy for a slow one). `send` never sends an event twice,
 * whatever the caller hands it, so a replay followed by live events can neither duplicate nor
 * skip one.
 */
export class Subscriber {
  readonly body: ReadableStream<Uint8Array>
  #writer: ClientSseWriter
  #lastId: number

  constructor(options: SubscriberOptions) {
    this.#writer = new ClientSseWriter({
      keepAliveMs: options.keepAliveMs,
      slowClient: 'drop',
      maxUntaken: MAX_UNTAKEN_WRITES,
      onGone: () => options.onGone(this),
    })
    this.body = this.#writer.body
    this.#lastId = options.afterId
    this.#writer.write(retryFrame(options.retryMs))
  }

  get open(): boolean {
    return this.#writer.open
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
    if (text !== '') this.#writer.write(text, onTaken)
  }

  /** Closes the connection once everything written has gone out. */
  end(): void {
    this.#writer.close()
  }
}
