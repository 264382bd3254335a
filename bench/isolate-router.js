// Benchmark only (scripts/stack.ts serveIsolates): spreads requests over the gateway copies
// GW0..GW<ISOLATES-1>, each its own isolate, uniformly at random, as Cloudflare spreads a
// deployment's requests over its isolates. The body streams through untouched.
export default {
  fetch(request, env) {
    const pick = Math.floor(Math.random() * Number(env.ISOLATES))
    return env[`GW${pick}`].fetch(request)
  },
}
