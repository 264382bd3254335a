// Mechanism (b): reader.js with the upstream decoded (TextDecoder), parsed (eventsource-parser,
// JSON.parse of each event) and written again as re-encoded text, one write per read, as
// src/relay/events.ts and stream.ts do. The client's body stays the floor's JS TransformStream.
import { Writer, fetchUpstream, pumpParsed } from './_parts.js'

export default {
  async fetch(request, env) {
    const response = await fetchUpstream(request, env)
    const reader = response.body.getReader()
    const out = new Writer('js', { onGone: () => void reader.cancel().catch(() => {}) })
    pumpParsed(reader, (text) => out.writeText(text)).then(
      () => out.close(),
      () => out.gone(),
    )
    return new Response(out.body, response)
  },
}
