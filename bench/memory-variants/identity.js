// Mechanism (a): reader.js with the client's body an IdentityTransformStream written through its
// writer, as src/relay/client-writer.ts writes it (no probe).
import { Writer, fetchUpstream, pumpRaw } from './_parts.js'

export default {
  async fetch(request, env) {
    const response = await fetchUpstream(request, env)
    const reader = response.body.getReader()
    const out = new Writer('identity', { onGone: () => void reader.cancel().catch(() => {}) })
    pumpRaw(reader, (chunk) => out.write(chunk)).then(
      () => out.close(),
      () => out.gone(),
    )
    return new Response(out.body, response)
  },
}
