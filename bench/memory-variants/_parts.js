// Shared pieces of the memory variants (bench/memory-variants.ts bundles each variant with esbuild,
// so they may import this and eventsource-parser). Each piece is one mechanism of the gateway's
// relay, written as the relay writes it (src/relay/client-writer.ts, events.ts, stream.ts,
// src/dispatch/upstream-call.ts), without anything else of the gateway.
import { createParser } from 'eventsource-parser'

/** As src/relay/client-writer.ts. */
export const GONE_CLIENT_PROBE_MS = 1_000
export const GONE_CLIENT_CONFIRM_MS = 100
/** As src/relay/sse.ts. */
export const PROBE_FRAME = ':\n\n'

const encoder = new TextEncoder()
const PROBE_BYTES = encoder.encode(PROBE_FRAME)

/** The upstream request as the floors send it: the client's request forwarded, optionally with a signal. */
export function fetchUpstream(request, env, signal) {
  const url = new URL(request.url)
  return fetch(new URL(url.pathname + url.search, env.UPSTREAM), {
    method: request.method,
    headers: request.headers,
    body: request.body,
    ...(signal ? { signal } : {}),
  })
}

/**
 * The client's body, written through a writer as ClientSseWriter writes it: `identity` is workerd's
 * IdentityTransformStream (the gateway's), `js` an identity JS TransformStream (the floor's stream,
 * written by a writer instead of pipeThrough). With `probe`, ClientSseWriter's gone-client probe:
 * one lazily re-armed timer per stream, a probe after each second of silence and a confirming
 * write GONE_CLIENT_CONFIRM_MS after it.
 */
export class Writer {
  constructor(kind, { probe = false, sharedProbe = false, onGone = () => {} } = {}) {
    const { readable, writable } =
      kind === 'identity'
        ? new IdentityTransformStream()
        : kind === 'js'
          ? new TransformStream({
              transform(chunk, controller) {
                controller.enqueue(chunk)
              },
            })
          : queueSink(kind === 'bytes' ? 'bytes' : undefined, () => this.gone())
    this.body = readable
    this.open = true
    this.onGone = onGone
    this.probe = probe
    this.sharedProbe = sharedProbe
    this.lastWriteAt = Date.now()
    this.confirmAt = 0
    this.writer = writable.getWriter()
    this.writer.closed.catch(() => this.gone())
    this.timer = probe ? setTimeout(this.tick, this.nextTickMs()) : undefined
  }

  write(bytes) {
    if (!this.open) return
    this.lastWriteAt = Date.now()
    this.writer.write(bytes).then(
      () => {},
      () => this.gone(),
    )
  }

  writeText(text) {
    this.write(encoder.encode(text))
  }

  /** As ClientSseWriter: the probe encoded for each write; with `sharedProbe`, one Uint8Array for every probe of every stream. */
  writeProbe() {
    if (this.sharedProbe) this.write(PROBE_BYTES)
    else this.writeText(PROBE_FRAME)
  }

  nextTickMs() {
    const now = Date.now()
    const probeIn = this.confirmAt !== 0 ? this.confirmAt - now : this.lastWriteAt + GONE_CLIENT_PROBE_MS - now
    return Math.max(1, probeIn)
  }

  tick = () => {
    if (!this.open) return
    const now = Date.now()
    if (this.confirmAt !== 0 && now >= this.confirmAt) {
      if (this.lastWriteAt < this.confirmAt) this.writeProbe()
      this.confirmAt = 0
    } else if (this.confirmAt === 0 && now - this.lastWriteAt >= GONE_CLIENT_PROBE_MS) {
      this.writeProbe()
      this.confirmAt = this.lastWriteAt + GONE_CLIENT_CONFIRM_MS
    }
    this.timer = setTimeout(this.tick, this.nextTickMs())
  }

  close() {
    if (!this.stop()) return
    this.writer.close().catch(() => {})
  }

  stop() {
    if (!this.open) return false
    this.open = false
    clearTimeout(this.timer)
    return true
  }

  gone() {
    if (this.stop()) this.onGone()
  }
}

/**
 * `queue` and `bytes`: a JS ReadableStream the writer enqueues into directly (no TransformStream,
 * no writable side); the runtime's pump reads it and cancels it when the client has gone. `type`
 * 'bytes' makes it a byte stream. Returned as { readable, writable } with a writer-shaped stand-in.
 */
function queueSink(type, onCancel) {
  let controller
  const readable = new ReadableStream(
    {
      type,
      start(c) {
        controller = c
      },
      cancel: onCancel,
    },
    { highWaterMark: 0 },
  )
  const writer = {
    closed: new Promise(() => {}),
    write(bytes) {
      controller.enqueue(bytes)
      return Promise.resolve()
    },
    close() {
      controller.close()
      return Promise.resolve()
    },
  }
  return { readable, writable: { getWriter: () => writer } }
}

/** The upstream read in a getReader() loop (`reader`: body.getReader()), each chunk written on as it is. */
export async function pumpRaw(reader, write) {
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return
    write(value)
  }
}

/**
 * The upstream read as src/relay/events.ts reads it: a getReader() loop, TextDecoder in streaming
 * mode, eventsource-parser, every event's data parsed as JSON (src/relay/chunk.ts) and framed
 * again (`data: ...\n\n`), the frames of one read written as one re-encoded text (TurnWrites).
 */
export async function pumpParsed(reader, writeText, signal) {
  const cancel = () => void reader.cancel(signal?.reason).catch(() => {})
  signal?.addEventListener('abort', cancel)
  const decoder = new TextDecoder()
  let pending = ''
  const parser = createParser({
    onEvent(event) {
      if (event.data !== '[DONE]') JSON.parse(event.data)
      pending += `data: ${event.data}\n\n`
    },
    maxBufferSize: 1 << 20,
  })
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) {
        parser.feed(decoder.decode())
        break
      }
      parser.feed(decoder.decode(value, { stream: true }))
      if (pending !== '') {
        writeText(pending)
        pending = ''
      }
    }
    if (pending !== '') writeText(pending)
  } finally {
    signal?.removeEventListener('abort', cancel)
  }
}
