// Mechanism (d): the JS floor with the upstream fetch given an AbortSignal (an AbortController per
// stream, as UpstreamCall has), an abort listener on it (as pumpEvents adds) and one on the
// client's request.signal (as relayChat and UpstreamCall add; enable_request_signal is on).
import { fetchUpstream } from './_parts.js'

export default {
  async fetch(request, env) {
    const controller = new AbortController()
    const onClientAbort = () => controller.abort('client_gone')
    request.signal.addEventListener('abort', onClientAbort, { once: true })
    const response = await fetchUpstream(request, env, controller.signal)
    const cancel = () => void response.body.cancel().catch(() => {})
    controller.signal.addEventListener('abort', cancel)
    const body = response.body.pipeThrough(
      new TransformStream({
        transform(chunk, stream) {
          stream.enqueue(chunk)
        },
        flush() {
          request.signal.removeEventListener('abort', onClientAbort)
          controller.signal.removeEventListener('abort', cancel)
        },
      }),
    )
    return new Response(body, response)
  },
}
