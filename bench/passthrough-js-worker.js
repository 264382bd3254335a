// The floor for any Worker that looks at the stream: like passthrough-worker.js, but every chunk
// goes through an identity TransformStream in JS. workerd pipes passthrough-worker.js's body
// natively; here each chunk crosses into JS once, as it must for any relay that parses events.
export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    const response = await fetch(new URL(url.pathname + url.search, env.UPSTREAM), {
      method: request.method,
      headers: request.headers,
      body: request.body,
    })
    const body = response.body.pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          controller.enqueue(chunk)
        },
      }),
    )
    return new Response(body, response)
  },
}
