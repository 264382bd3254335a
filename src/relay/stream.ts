import { carriesToken, ChunkReader } from './chunk.ts'
import { pumpEvents } from './events.ts'
import { DONE_FRAME, KEEPALIVE_FRAME, backendErrorFrame, dataFrame, streamErrorFrame } from './sse.ts'
import type { TokenUse } from '../limits/ledger.ts'
import type { Outcome } from '../telemetry/record.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { ErrorEventBeforeData } from './attempts.ts'
import { upstreamTruncated, type UpstreamCall } from './upstream-call.ts'

/** An accepted upstream request: its event stream and its call. */
export interface RelaySource {
  upstream: ReadableStream<Uint8Array>
  call: UpstreamCall
  /** The backend runs without a reasoning parser (see ChunkReader). */
  reasoningInContent?: boolean
}

export interface SseRelayOptions<S extends RelaySource> {
  /**
   * Failover: called when `source` failed before any data event reached the client; returns the
   * next accepted source, or null to end the stream with the failure.
   */
  next?: (source: S, error: unknown) => Promise<S | null>
  /** Runs once when the stream is over, with the tokens the backend reported and how it ended. */
  onEnd?: (used: TokenUse | null, outcome: Exclude<Outcome, 'refused'>) => void
  /** Told when the first token arrives and when the client has taken it. */
  observer?: RelayObserver
  /** Whether the client asked for the usage chunk (stream_options.include_usage). */
  forwardUsage: boolean
  /** Whether the client asked for usage on every chunk (stream_options.continuous_usage_stats). */
  forwardChunkUsage: boolean
  keepAliveMs: number
}

const encoder = new TextEncoder()

/**
 * Writes the client has not taken yet before the relay stops reading upstream. A client that
 * keeps up never makes the relay wait; a slow one holds at most this many chunks in memory.
 */
const MAX_UNSETTLED_WRITES = 8

/**
 * Relays an accepted upstream vLLM stream to the client, event by event, as each is parsed, and
 * returns the client's response body. Whatever goes wrong from here on ends the stream with an
 * error event and `data: [DONE]`; a client that goes away stops the upstream at once.
 */
export function relaySse<S extends RelaySource>(first: S, options: SseRelayOptions<S>): ReadableStream<Uint8Array> {
  const { forwardUsage, forwardChunkUsage, keepAliveMs, observer } = options
  let source = first
  const readerFor = (next: S) => new ChunkReader({ keepChunkUsage: forwardChunkUsage, reasoningInContent: next.reasoningInContent })
  let reader = readerFor(first)
  /** Whether any data event has gone to the client: from then on there is no failover. */
  let sentData = false
  /** Whether the backend sent an error event mid-stream (passed on as is): the answer is not ok. */
  let backendFailed = false
  // workerd's native byte pipe: a written chunk goes to the client without JS stream queueing.
  const { readable, writable } = new IdentityTransformStream()
  const writer = writable.getWriter()
  let open = true
  let lastWriteAt = Date.now()
  let keepAliveTimer!: ReturnType<typeof setTimeout>

  const clientGone = () => {
    if (!open) return
    open = false
    clearTimeout(keepAliveTimer)
    source.call.stop('client_gone')
  }
  writer.closed.catch(clientGone)

  // Frames parsed from one upstream read are written together at the end of that same turn:
  // no waiting, just one write (and one network flush) instead of one per event.
  // An IdentityTransformStream write settles when the client has read it; its `ready` and
  // `desiredSize` ignore unread writes, so backpressure waits on the newest write itself.
  let pending = ''
  let unsettledWrites = 0
  let newestWrite: Promise<void> = Promise.resolve()
  const settled = () => {
    unsettledWrites--
  }
  // The first token's arrival and its delivery (the write that carries it settling) are timed.
  let firstTokenSeen = false
  let firstTokenPending = false
  const firstTokenTaken = () => {
    observer?.firstTokenDelivered()
    settled()
  }
  const send = (frame: string) => {
    pending += frame
  }
  const flush = () => {
    if (!open || pending === '') return
    lastWriteAt = Date.now()
    unsettledWrites++
    newestWrite = writer.write(encoder.encode(pending)).then(firstTokenPending ? firstTokenTaken : settled, clientGone)
    firstTokenPending = false
    pending = ''
  }

  // Lazily re-armed: it wakes once per interval at most and sends only after real silence.
  const keepAlive = () => {
    if (!open) return
    if (Date.now() - lastWriteAt >= keepAliveMs) {
      send(KEEPALIVE_FRAME)
      flush()
    }
    keepAliveTimer = setTimeout(keepAlive, Math.max(1, keepAliveMs - (Date.now() - lastWriteAt)))
  }
  keepAliveTimer = setTimeout(keepAlive, keepAliveMs)

  const onData = (data: string): boolean => {
    const chunk = reader.read(data)
    source.call.chunkArrived(chunk)
    if (chunk.kind === 'done') {
      send(DONE_FRAME)
      return false
    }
    if (chunk.kind === 'error') {
      // Before any data, a backend error may still fail over; otherwise it goes on as vLLM sent it.
      if (!sentData) throw new ErrorEventBeforeData(chunk.error, data)
      backendFailed = true
      send(backendErrorFrame(chunk.error, data))
      return true
    }
    if (!firstTokenSeen && carriesToken(chunk)) {
      firstTokenSeen = firstTokenPending = true
      observer?.firstTokenArrived()
    }
    if (chunk.kind === 'delta' || forwardUsage) {
      send(dataFrame(chunk.data))
      sentData = true
    }
    return true
  }

  const close = (how: 'finish' | 'abort', outcome: Exclude<Outcome, 'refused'>) => {
    open = false
    clearTimeout(keepAliveTimer)
    source.call.end()
    options.onEnd?.(source.call.used, outcome)
    if (how === 'finish') writer.close().catch(() => {})
    else writer.abort().catch(() => {})
  }

  // A failure after the backend accepted the request: an error event, then [DONE].
  const fail = (reason: unknown) => {
    const { call } = source
    const error = call.failure(reason)
    const clientThere = open && call.stopReason !== 'client_gone'
    call.stop('relay_failed')
    if (!clientThere) return close('abort', 'client_abort')
    // A backend error event that no other backend replaced goes on as the backend sent it.
    send(reason instanceof ErrorEventBeforeData ? backendErrorFrame(reason.error, reason.data) : streamErrorFrame(error))
    send(DONE_FRAME)
    flush()
    close('finish', 'upstream_error')
  }

  const afterRead = () => {
    flush()
    return unsettledWrites > MAX_UNSETTLED_WRITES ? newestWrite : undefined
  }
  const pump = async (): Promise<void> => {
    for (;;) {
      try {
        const end = await pumpEvents(source.upstream, onData, { signal: source.call.signal, afterRead })
        if (end === 'eof') throw upstreamTruncated()
        return
      } catch (error) {
        const cause = error instanceof ErrorEventBeforeData ? error.error : error
        const replacement = sentData || !open || !options.next ? null : await options.next(source, cause)
        if (!replacement) throw error
        source = replacement
        reader = readerFor(replacement)
      }
    }
  }
  pump()
    .then(() => {
      flush()
      close('finish', backendFailed ? 'upstream_error' : 'ok')
    })
    .catch(fail)

  return readable
}
