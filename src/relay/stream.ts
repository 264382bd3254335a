import type { RelayObserver } from '../telemetry/trace.ts'
import { ClientSseWriter } from './client-writer.ts'
import { runGeneration, type DataChunk, type GenerationEnd, type GenerationSink, type NextSource, type RelaySource } from './generation.ts'
import { DONE_FRAME, backendErrorFrame, dataFrame, streamErrorFrame } from './sse.ts'
import type { ApiError } from '../errors.ts'

export type { RelaySource } from './generation.ts'

export interface SseRelayOptions<S extends RelaySource> {
  /** Failover while no data event reached the client. */
  next?: NextSource<S>
  /** Runs once when the stream is over, with how it ended. */
  onEnd?: (end: GenerationEnd) => void
  /** Told when the first token arrives and when the client has taken it. */
  observer?: RelayObserver
  /** Whether the client asked for the usage chunk (stream_options.include_usage). */
  forwardUsage: boolean
  /** Whether the client asked for usage on every chunk (stream_options.continuous_usage_stats). */
  forwardChunkUsage: boolean
  keepAliveMs: number
  /** Runs when the client has gone (the relay stops the upstream call itself). */
  onClientGone?: () => void
}

/**
 * Writes the client has not taken yet before the relay stops reading upstream. A client that
 * keeps up never makes the relay wait; a slow one holds at most this many chunks in memory.
 */
const MAX_UNSETTLED_WRITES = 8

const NO_OBSERVER: RelayObserver = { attemptStarted() {}, firstTokenArrived() {}, firstTokenDelivered() {} }

/**
 * The OpenAI SSE pass-through: each backend event goes on as its own `data:` frame, the frames of
 * one upstream read in one write at the end of that same turn (no waiting: one network flush
 * instead of one per event). Whatever goes wrong once committed ends the stream with an error
 * event and `data: [DONE]`.
 */
export class SsePassThrough implements GenerationSink {
  readonly writer: ClientSseWriter
  committed = false
  #forwardUsage: boolean
  #observer: RelayObserver
  #pending = ''
  #firstTokenPending = false
  #sentBackendError = false

  constructor(options: { forwardUsage: boolean; keepAliveMs: number; observer: RelayObserver; onGone: () => void }) {
    this.#forwardUsage = options.forwardUsage
    this.#observer = options.observer
    this.writer = new ClientSseWriter({
      keepAliveMs: options.keepAliveMs,
      slowClient: 'wait',
      maxUntaken: MAX_UNSETTLED_WRITES,
      onGone: options.onGone,
    })
  }

  chunk(chunk: DataChunk, firstToken: boolean): void {
    if (firstToken) this.#firstTokenPending = true
    if (chunk.kind === 'usage' && !this.#forwardUsage) return
    this.#pending += dataFrame(chunk.data)
    this.committed = true
  }

  backendError(error: ApiError, data: string): void {
    this.#sentBackendError = true
    this.#pending += backendErrorFrame(error, data)
  }

  afterRead(): Promise<unknown> | undefined {
    this.#flush()
    return this.writer.backpressure()
  }

  /** Ends the client's stream as the generation ended: [DONE] after an error event if it failed. */
  finish(end: GenerationEnd): void {
    if (!this.writer.open || end.outcome === 'client_abort') return this.writer.abort()
    if (end.error && !this.#sentBackendError) {
      this.#pending += end.backendEvent !== null ? backendErrorFrame(end.error, end.backendEvent) : streamErrorFrame(end.error)
    }
    this.#pending += DONE_FRAME
    this.#flush()
    this.writer.close()
  }

  #flush(): void {
    if (this.#pending === '') return
    // The write that carries the first token is timed: its settling is the client taking it.
    const taken = this.#firstTokenPending ? () => this.#observer.firstTokenDelivered() : undefined
    this.writer.write(this.#pending, taken)
    this.#pending = ''
    this.#firstTokenPending = false
  }
}

/**
 * Relays an accepted upstream vLLM stream to the client, event by event, as each is parsed, and
 * returns the client's response body. A client that goes away stops the upstream at once.
 */
export function relaySse<S extends RelaySource>(first: S, options: SseRelayOptions<S>): ReadableStream<Uint8Array> {
  let current = first
  const observer = options.observer ?? NO_OBSERVER
  const sink = new SsePassThrough({
    forwardUsage: options.forwardUsage,
    keepAliveMs: options.keepAliveMs,
    observer,
    onGone: () => {
      current.call.stop('client_gone')
      options.onClientGone?.()
    },
  })
  const next: NextSource<S> | null = options.next
    ? async (source, error) => {
        const replacement = await (options.next as NextSource<S>)(source, error)
        if (replacement) current = replacement
        return replacement
      }
    : null
  void runGeneration(first, next, sink, { afterBackendError: 'read_to_done', observer, keepChunkUsage: options.forwardChunkUsage }).then(
    (end) => {
      sink.finish(end)
      options.onEnd?.(end)
    },
  )
  return sink.writer.body
}
