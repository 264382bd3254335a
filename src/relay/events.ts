import { createParser } from 'eventsource-parser'
import { ApiError } from '../errors.ts'

/**
 * The most characters one upstream line or event may buffer before it ends. A vLLM chunk is a few
 * hundred bytes (with 20 top logprobs, tens of kB); a backend line that never ends would
 * otherwise grow in memory until the isolate dies.
 */
export const MAX_EVENT_CHARS = 1 << 20

function eventTooLarge(): ApiError {
  return new ApiError(502, `The backend sent an event longer than ${MAX_EVENT_CHARS} characters.`, { code: 'upstream_event_too_large' })
}

/** Return false to end the stream: nothing after it is read. */
export type DataHandler = (data: string) => boolean

export type PumpEnd = 'ended' | 'eof'

/**
 * Reads an upstream SSE body and hands each event's data to `onData` the moment the parser
 * completes it, in the same turn in which its bytes arrived. eventsource-parser handles lines
 * split across reads and LF, CRLF and CR line ends; TextDecoder in streaming mode holds back a
 * multibyte character split across reads and drops a leading BOM. Comments and `event:`/`id:`
 * fields are not data and are not relayed (vLLM sends none).
 *
 * `afterRead` runs after each read; a promise it returns is awaited before the next read, which
 * is how the relay applies the client's backpressure. When
 * `signal` aborts, the body is cancelled at once, whatever kind of stream it is.
 * Resolves 'ended' when onData ended the stream, 'eof' when the upstream closed first; rejects
 * when the upstream fails or onData throws. The upstream body is released either way.
 */
export async function pumpEvents(
  body: ReadableStream<Uint8Array>,
  onData: DataHandler,
  options: { signal?: AbortSignal; afterRead?: () => Promise<unknown> | undefined } = {},
): Promise<PumpEnd> {
  const { signal, afterRead } = options
  const reader = body.getReader()
  const cancel = () => void reader.cancel(signal?.reason).catch(() => {})
  signal?.addEventListener('abort', cancel)
  const decoder = new TextDecoder()
  let ended = false
  let overflow = false
  const parser = createParser({
    onEvent(event) {
      if (!ended && !onData(event.data)) ended = true
    },
    onError(error) {
      if (error.type === 'max-buffer-size-exceeded') overflow = true
    },
    maxBufferSize: MAX_EVENT_CHARS,
  })
  const feed = (text: string) => {
    parser.feed(text)
    if (overflow) throw eventTooLarge()
  }
  try {
    while (!ended) {
      const { done, value } = await reader.read()
      if (done) {
        feed(decoder.decode())
        break
      }
      feed(decoder.decode(value, { stream: true }))
      const wait = ended ? undefined : afterRead?.()
      if (wait) await wait
    }
  } catch (error) {
    // On a failure nothing more is wanted; cancelling also aborts a live upstream request.
    reader.cancel().catch(() => {})
    throw error
  } finally {
    signal?.removeEventListener('abort', cancel)
  }
  if (signal?.aborted) throw signal.reason
  if (ended) drainThenRelease(reader)
  return ended ? 'ended' : 'eof'
}

/** How long the end of a finished response may take before its connection is dropped. */
const DRAIN_MS = 1_000

/**
 * vLLM closes the response right after [DONE]. Reading that end, instead of cancelling, leaves
 * the connection reusable for the next request (a cancel would cost every request a new TCP
 * connection). Runs in the background; a backend that keeps talking is cut off after DRAIN_MS.
 */
function drainThenRelease(reader: ReadableStreamDefaultReader<Uint8Array>): void {
  const timer = setTimeout(() => void reader.cancel().catch(() => {}), DRAIN_MS)
  const drain = async () => {
    while (!(await reader.read()).done) {
      // discard
    }
  }
  drain()
    .catch(() => {})
    .finally(() => clearTimeout(timer))
}
