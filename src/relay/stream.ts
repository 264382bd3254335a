import { readChunk } from './chunk.ts'
import { pumpEvents } from './events.ts'
import { DONE_FRAME, KEEPALIVE_FRAME, dataFrame, streamErrorFrame } from './sse.ts'
import { upstreamTruncated, type UpstreamCall } from './upstream-call.ts'

export interface SseRelayOptions {
  call: UpstreamCall
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
export function relaySse(upstream: ReadableStream<Uint8Array>, options: SseRelayOptions): ReadableStream<Uint8Array> {
  const { call, forwardUsage, forwardChunkUsage, keepAliveMs } = options
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
    call.stop('client_gone')
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
  const send = (frame: string) => {
    pending += frame
  }
  const flush = () => {
    if (!open || pending === '') return
    lastWriteAt = Date.now()
    unsettledWrites++
    newestWrite = writer.write(encoder.encode(pending)).then(settled, clientGone)
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
    call.eventArrived()
    const chunk = readChunk(data, forwardChunkUsage)
    if (chunk.kind === 'done') {
      send(DONE_FRAME)
      return false
    }
    if (chunk.kind !== 'error' && chunk.usage) call.usageReported(chunk.usage)
    // vLLM's own error events go on as sent; its [DONE] follows them.
    if (chunk.kind === 'error') send(dataFrame(data))
    else if (chunk.kind === 'delta' || forwardUsage) send(dataFrame(chunk.data))
    return true
  }

  const close = (how: 'finish' | 'abort') => {
    open = false
    clearTimeout(keepAliveTimer)
    call.end()
    if (how === 'finish') writer.close().catch(() => {})
    else writer.abort().catch(() => {})
  }

  // A failure after the backend accepted the request: an error event, then [DONE].
  const fail = (reason: unknown) => {
    const error = call.failure(reason)
    const clientThere = open && call.stopReason !== 'client_gone'
    call.stop('relay_failed')
    if (!clientThere) return close('abort')
    send(streamErrorFrame(error))
    send(DONE_FRAME)
    flush()
    close('finish')
  }

  pumpEvents(upstream, onData, {
    signal: call.signal,
    afterRead: () => {
      flush()
      return unsettledWrites > MAX_UNSETTLED_WRITES ? newestWrite : undefined
    },
  })
    .then((end) => {
      if (end === 'eof') return fail(upstreamTruncated())
      flush()
      close('finish')
    })
    .catch(fail)

  return readable
}
