// Mechanism (c): the JS floor (pipeThrough an identity TransformStream) with the gateway's
// gone-client probe: a lazily re-armed timer per stream, a probe (`:\n\n`, encoded per write)
// after each second of silence and a confirming write 100 ms after it (src/relay/client-writer.ts).
import { GONE_CLIENT_CONFIRM_MS, GONE_CLIENT_PROBE_MS, PROBE_FRAME, fetchUpstream } from './_parts.js'

const encoder = new TextEncoder()

export default {
  async fetch(request, env) {
    const response = await fetchUpstream(request, env)
    let lastWriteAt = Date.now()
    let confirmAt = 0
    let timer
    let out
    const nextTickMs = () => Math.max(1, confirmAt !== 0 ? confirmAt - Date.now() : lastWriteAt + GONE_CLIENT_PROBE_MS - Date.now())
    const probe = () => {
      try {
        out.enqueue(encoder.encode(PROBE_FRAME))
      } catch {
        return false // the client's side was cancelled: the stream is over
      }
      lastWriteAt = Date.now()
      return true
    }
    const tick = () => {
      const now = Date.now()
      if (confirmAt !== 0 && now >= confirmAt) {
        if (lastWriteAt < confirmAt && !probe()) return
        confirmAt = 0
      } else if (confirmAt === 0 && now - lastWriteAt >= GONE_CLIENT_PROBE_MS) {
        if (!probe()) return
        confirmAt = lastWriteAt + GONE_CLIENT_CONFIRM_MS
      }
      timer = setTimeout(tick, nextTickMs())
    }
    const body = response.body.pipeThrough(
      new TransformStream({
        start(controller) {
          out = controller
          timer = setTimeout(tick, nextTickMs())
        },
        transform(chunk, controller) {
          lastWriteAt = Date.now()
          controller.enqueue(chunk)
        },
        flush() {
          clearTimeout(timer)
        },
        cancel() {
          clearTimeout(timer)
        },
      }),
    )
    return new Response(body, response)
  },
}
