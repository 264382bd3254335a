import { ApiError } from '../errors.ts'
import { readChunk } from './chunk.ts'
import { pumpEvents } from './events.ts'
import { DONE_FRAME, KEEPALIVE_FRAME, dataFrame, streamErrorFrame } from './sse.ts'
import type { UpstreamCall } from './upstream-call.ts'

export interface SseRelayOptions {
  call: UpstreamCall
  /** Whether the client asked for the usage chunk (stream_options.include_usage). */
  forwardUsage: boolean
  keepAliveMs: number
}

export interface SseRelay {
  /** The client's response body. */
  readable: ReadableStream<Uint8Array>
  /**
   * Resolves when the first frame is ready for the client: the response is committed as a 200
   * stream. Rejects with an ApiError when the request failed before that, so the client still
   * gets a real status code (and a later failover can still pick another backend).
   */
  committed: Promise<void>
}

const encoder = new TextEncoder()

/**
 * Writes the client has not taken yet before the relay stops reading upstream. A client that
 * keeps up never makes the relay wait; a slow one holds at most this many chunks in memory.
 */
const MAX_UNSETTLED_WRITES = 8

/**
 * Relays an upstream vLLM stream to the client, event by event, as each is parsed. Until the
 * first frame is sent, failures reject `committed`; after it, a failure ends the stream with an
 * error event and `data: [DONE]`. A client that goes away stops the upstream at once.
 */
export function relaySse(upstream: ReadableStream<Uint8Array>, options: SseRelayOptions): SseRelay {
  const { call, forwardUsage, keepAliveMs } = options
  // workerd's native byte pipe: a written chunk goes to the client without JS stream queueing.
  const { readable, writable } = new IdentityTransformStream()
  const writer = writable.getWriter()
  const { promise: committed, resolve: commit, reject: refuse } = Promise.withResolvers<void>()
  let started = false
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
  let pending = ''
  // An IdentityTransformStream write settles when the client has read it; its `ready` and
  // `desiredSize` ignore unread writes, so backpressure waits on the newest write itself.
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
    if (!started) {
      started = true
      commit()
    }
  }

  // Lazily re-armed: it wakes once per interval at most and sends only after real silence.
  const keepAlive = () => {
    if (!open) return
    const idle = Date.now() - lastWriteAt
    if (idle >= keepAliveMs) {
      send(KEEPALIVE_FRAME)
      flush()
    }
    keepAliveTimer = setTimeout(keepAlive, Math.max(1, keepAliveMs - (Date.now() - lastWriteAt)))
  }
  keepAliveTimer = setTimeout(keepAlive, keepAliveMs)

  const onData = (data: string): boolean => {
    call.eventArrived()
    const chunk = readChunk(data)
    if (chunk.kind === 'done') {
      send(DONE_FRAME)
      return false
    }
    if (chunk.kind === 'error') {
      // Before anything was sent the client can still get a proper status instead of a 200.
      if (!started && pending === '') throw chunk.error
      send(dataFrame(data))
      return true
    }
    if (chunk.kind === 'delta' || forwardUsage) send(dataFrame(chunk.data))
    return true
  }

  const finish = () => {
    flush()
    open = false
    clearTimeout(keepAliveTimer)
    call.end()
    writer.close().catch(() => {})
  }

  // Ends the relay after a failure: an error event while the stream runs, a rejected
  // `committed` before it started, nothing at all when the client is gone.
  const fail = (reason: unknown) => {
    const error = call.stopError() ?? (reason instanceof ApiError ? reason : lostUpstream())
    const clientThere = open && call.stopReason !== 'client_gone'
    call.stop('relay_failed')
    flush()
    if (clientThere && started) {
      send(streamErrorFrame(error))
      send(DONE_FRAME)
      finish()
      return
    }
    refuse(error)
    open = false
    clearTimeout(keepAliveTimer)
    writer.abort().catch(() => {})
  }

  pumpEvents(upstream, onData, {
    signal: call.signal,
    afterRead: () => {
      flush()
      return unsettledWrites > MAX_UNSETTLED_WRITES ? newestWrite : undefined
    },
  })
    .then((end) => (end === 'ended' ? finish() : fail(truncated())))
    .catch(fail)

  // A rejection nobody awaits (the client already has its answer) is not an error.
  committed.catch(() => {})
  return { readable, committed }
}

function lostUpstream(): ApiError {
  return new ApiError(502, 'The connection to the backend was lost mid-stream.', { code: 'upstream_connection_lost' })
}

function truncated(): ApiError {
  return new ApiError(502, 'The backend closed the stream before it finished.', { code: 'upstream_stream_truncated' })
}
