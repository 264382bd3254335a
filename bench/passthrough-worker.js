// The floor for any Worker: forwards the request to UPSTREAM and returns the response as is.
// Benchmarks compare the gateway with this, so what is measured is the gateway's own cost.
export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    return fetch(new URL(url.pathname + url.search, env.UPSTREAM), {
      method: request.method,
      headers: request.headers,
      body: request.body,
    })
  },
}
