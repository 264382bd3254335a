// Reading server-sent events in tests, in one place: what the Worker sends a client, what the
// emulator sends the Worker, and vLLM captures. Web-standard APIs only, so the tests inside workerd
// and the Node tests (emulator, e2e) share it.

/** Reads a body to the end as text. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text()
}

/** Splits SSE text into its frames (each without the blank-line terminator). */
export function frames(text: string): string[] {
  return text.split('\n\n').filter((frame) => frame !== '')
}

/** Splits SSE text into its events, each with its terminating blank line (for byte-exact checks). */
export function events(text: string): string[] {
  return text.split(/(?<=\n\n)/).filter((event) => event !== '')
}

/** The JSON of the data frames, leaving out [DONE] and comments (keep-alives). */
export function dataEvents(frames: string[]): unknown[] {
  return frames
    .filter((frame) => frame.startsWith('data: ') && frame !== 'data: [DONE]')
    .map((frame) => JSON.parse(frame.slice('data: '.length)) as unknown)
}

/** The JSON payloads of every event but [DONE]: strict, so a frame that is not data fails the test. */
export function payloads(text: string): Record<string, unknown>[] {
  return events(text)
    .filter((event) => event !== 'data: [DONE]\n\n')
    .map((event) => JSON.parse(event.slice('data: '.length)) as Record<string, unknown>)
}

/** Reads frames one at a time, for tests that care about when each one arrives. */
export function frameReader(stream: ReadableStream<Uint8Array>) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  return {
    /** The next frame without its terminator; null once the stream ended. */
    async next(): Promise<string | null> {
      for (;;) {
        const end = buffer.indexOf('\n\n')
        if (end !== -1) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          return frame
        }
        const { done, value } = await reader.read()
        if (done) return null
        buffer += value
      }
    },
    cancel: () => reader.cancel(),
  }
}

/** Reads from `reader` until `predicate(text so far)` holds or the stream ends; returns the text. */
export async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, predicate: (text: string) => boolean): Promise<string> {
  const decoder = new TextDecoder()
  let text = ''
  while (!predicate(text)) {
    const { value, done } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
  }
  return text
}
