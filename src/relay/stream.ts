import type { RelayObserver } from '../telemetry/trace.ts'
import { ClientSseWriter } from './client-writer.ts'
import { runGeneration, type DataChunk, type GenerationEnd, type GenerationSink, type NextSource, type RelaySource } from './generation.ts'
import { DONE_FRAME, backendErrorFrame, dataFrame, streamErrorFrame } from './sse.ts'
import { reasonOfCode } from '../ending.ts'
import { ApiError } from '../errors.ts'
import type { HedgePlan } from '../dispatch/hedge.ts'

export type { RelaySource } from './generation.ts'

export interface SseRelayOptions {
  /** Runs once when the stream is over, with how it ended. */
  onEnd?: (end: GenerationEnd) => void
  /** Told when the first token arrives and when the client has taken it. */
  observer?: RelayObserver
  /** Whether the client asked for the usage chunk (stream_options.include_usage). */
  forwardUsage: boolean
  /** Whether the client asked for usage on every chunk (stream_options.continuous_usage_stats). */
  forwardChunkUsage: boolean
  keepAliveMs: number
  /** Runs when the client has gone (the relay stops the running upstream call itself). */
  onClientGone?: () => void
  /** The client's event format; the OpenAI chat pass-through (SsePassThrough) when unset. */
  sink?: (options: StreamSinkOptions) => StreamSink
  /** The 200 is committed before a backend accepted: probe the client at once (see ClientWriterOptions). */
  probeAtOnce?: boolean
}

export interface StreamSinkOptions {
  forwardUsage: boolean
  keepAliveMs: number
  observer: RelayObserver
  onGone: () => void
  /** See ClientWriterOptions.probeAtOnce. */
  probeAtOnce?: boolean
}

/** A sink that streams to the client: its writer's body is the response, `finish` ends it. */
export interface StreamSink extends GenerationSink {
  readonly writer: ClientSseWriter
  /** May finish later (a stored response is stored before its last event); the relay's end waits for it. */
  finish(end: GenerationEnd): void | Promise<void>
}

/**
 * Writes the client has not taken yet before the relay stops reading upstream. A client that
 * keeps up never makes the relay wait; a slow one holds at most this many chunks in memory.
 */
export const MAX_UNSETTLED_WRITES = 8

/** The client writer of an API stream (chat completions, Responses): a slow client is waited for. */
export function apiClientWriter(options: StreamSinkOptions): ClientSseWriter {
  return new ClientSseWriter({
    keepAliveMs: options.keepAliveMs,
    slowClient: 'wait',
    maxUntaken: MAX_UNSETTLED_WRITES,
    onGone: options.onGone,
    probeAtOnce: options.probeAtOnce ?? false,
  })
}

/**
 * The frames of one upstream read, written to the client in one write at the end of that same
 * turn (no waiting: one network flush instead of one per event). The write that carries the first
 * token is timed: its settling is the client taking it.
 */
export class TurnWrites {
  readonly writer: ClientSseWriter
  #observer: RelayObserver
  #pending = ''
  #firstTokenPending = false

  constructor(writer: ClientSseWriter, observer: RelayObserver) {
    this.writer = writer
    this.#observer = observer
  }

  add(frame: string): void {
    this.#pending += frame
  }

  /** The frames added in this turn carry the first token. */
  firstToken(): void {
    this.#firstTokenPending = true
  }

  flush(): void {
    if (this.#pending === '') return
    const taken = this.#firstTokenPending ? () => this.#observer.firstTokenDelivered() : undefined
    this.writer.write(this.#pending, taken)
    this.#pending = ''
    this.#firstTokenPending = false
  }
}

const NO_OBSERVER: RelayObserver = { attemptStarted() {}, firstTokenArrived() {}, firstTokenDelivered() {} }

/**
 * The OpenAI SSE pass-through: each backend event goes on as its own `data:` frame, the frames of
 * one upstream read in one write at the end of that same turn (no waiting: one network flush
 * instead of one per event). Whatever goes wrong once committed ends the stream with an error
 * event and `data: [DONE]`.
 */
export class SsePassThrough implements StreamSink {
  readonly writer: ClientSseWriter
  committed = false
  #forwardUsage: boolean
  #out: TurnWrites
  #sentBackendError = false

  constructor(options: StreamSinkOptions) {
    this.#forwardUsage = options.forwardUsage
    this.writer = apiClientWriter(options)
    this.#out = new TurnWrites(this.writer, options.observer)
  }

  chunk(chunk: DataChunk, firstToken: boolean): void {
    if (firstToken) this.#out.firstToken()
    if (chunk.kind === 'usage' && !this.#forwardUsage) return
    this.#out.add(dataFrame(chunk.data))
    this.committed = true
  }

  backendError(error: ApiError, data: string): void {
    this.#sentBackendError = true
    this.#out.add(backendErrorFrame(error, data))
  }

  afterRead(): Promise<unknown> | undefined {
    this.#out.flush()
    return this.writer.backpressure()
  }

  /** Ends the client's stream as the generation ended: [DONE] after an error event if it failed. */
  finish(end: GenerationEnd): void {
    if (!this.writer.open || end.reason === 'client_gone') return this.writer.abort()
    if (end.error && !this.#sentBackendError) {
      this.#out.add(end.backendEvent !== null ? backendErrorFrame(end.error, end.backendEvent) : streamErrorFrame(end.error))
    }
    this.#out.add(DONE_FRAME)
    this.#out.flush()
    this.writer.close()
  }
}

/** How a relay starts: the accepted first source, and failover from it (null: none). */
export interface RelayStart<S extends RelaySource> {
  first: S
  next: NextSource<S> | null
  /** Hedged first tokens (see HedgeRace); absent: never. */
  hedge?: HedgePlan<S> | null
}

/**
 * Relays an upstream vLLM stream to the client, event by event, as each is parsed, and returns
 * the client's response body at once. `start` may still be pending (the 200 is committed before a
 * backend accepted); if it fails, the stream ends with its error event. A client that goes away
 * stops the upstream at once.
 */
export function relaySse<S extends RelaySource>(start: Promise<RelayStart<S>>, options: SseRelayOptions): ReadableStream<Uint8Array> {
  let current: S | null = null
  let clientGone = false
  const observer = options.observer ?? NO_OBSERVER
  const makeSink = options.sink ?? ((sinkOptions: StreamSinkOptions) => new SsePassThrough(sinkOptions))
  const sink = makeSink({
    forwardUsage: options.forwardUsage,
    keepAliveMs: options.keepAliveMs,
    observer,
    probeAtOnce: options.probeAtOnce ?? false,
    onGone: () => {
      clientGone = true
      current?.call.stop('client_gone')
      options.onClientGone?.()
    },
  })
  const generate = ({ first, next, hedge }: RelayStart<S>): Promise<GenerationEnd> => {
    current = first
    // The relay follows failover, so a client that leaves stops whichever attempt is running.
    const followed: NextSource<S> | null = next
      ? async (source, error) => {
          const replacement = await next(source, error)
          if (replacement) current = replacement
          return replacement
        }
      : null
    return runGeneration(first, followed, sink, {
      afterBackendError: 'read_to_done',
      observer,
      keepChunkUsage: options.forwardChunkUsage,
      hedge: hedge ?? null,
    })
  }
  void start
    .then(generate)
    .catch((error: unknown) => failedBeforeStart(error, clientGone))
    .then(async (end) => {
      await sink.finish(end)
      options.onEnd?.(end)
    })
  return sink.writer.body
}

/** A relay whose start failed after the 200 was committed: no backend took the request. */
function failedBeforeStart(error: unknown, clientGone: boolean): GenerationEnd {
  const apiError = error instanceof ApiError ? error : new ApiError(502, 'No backend could take the request.', { code: 'upstream_error' })
  const reason = clientGone ? 'client_gone' : reasonOfCode(apiError.code)
  return { reason, error: apiError, backendEvent: null, finishReason: null, used: null }
}
