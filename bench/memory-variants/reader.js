// The JS floor (bench/passthrough-js-worker.js) with the upstream read in a getReader() loop and
// written to the same identity JS TransformStream through its writer, instead of pipeThrough.
import { Writer, fetchUpstream, pumpRaw } from './_parts.js'

export default {
  async fetch(request, env) {
    const response = await fetchUpstream(request, env)
    const reader = response.body.getReader()
    const out = new Writer('js', { onGone: () => void reader.cancel().catch(() => {}) })
    pumpRaw(reader, (chunk) => out.write(chunk)).then(
      () => out.close(),
      () => out.gone(),
    )
    return new Response(out.body, response)
  },
}
