// Byte-stream fixtures for relay tests: an upstream body whose chunk boundaries the test chooses.
// Reading what comes out is in sse.ts.

const encoder = new TextEncoder()

export function bytes(text: string): Uint8Array {
  return encoder.encode(text)
}

/** A finished stream made of exactly these reads. */
export function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === 'string' ? bytes(chunk) : chunk)
      controller.close()
    },
  })
}

/** A stream the test feeds by hand; `cancelled` resolves with the reason if the reader cancels. */
export function manualStream() {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  const { promise: cancelled, resolve: onCancel } = Promise.withResolvers<unknown>()
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c
    },
    cancel(reason) {
      onCancel(reason)
    },
  })
  return {
    stream,
    cancelled,
    push: (text: string | Uint8Array) => controller.enqueue(typeof text === 'string' ? bytes(text) : text),
    close: () => controller.close(),
    /** Bytes' worth of chunks queued upstream that nobody has read (negative: a backlog). */
    desiredSize: () => controller.desiredSize ?? 0,
    fail: (error: Error) => controller.error(error),
  }
}
