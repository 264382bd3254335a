// Benchmark-only entry: this Worker's relay path with no auth, no validation and no prompt
// normalization, so `npm run bench` can measure what those steps cost (gateway vs gateway-bare).
// Never deployed: it exists only as a bundle built by the benchmark.
import { Hono } from 'hono'
import { requestId } from 'hono/request-id'
import { loadConfig } from '../src/middleware/config.ts'
import type { AppEnv } from '../src/env.ts'
import { renderError } from '../src/errors.ts'
import { newChatRequestHold, relayChat } from '../src/relay/chat-relay.ts'
import { relayInputOf } from '../src/chat/prepare.ts'
import type { UpstreamChatRequest } from '../src/normalize/index.ts'
import { RequestTrace } from '../src/telemetry/trace.ts'

const app = new Hono<AppEnv>()
app.use(requestId())
app.use(loadConfig)
// No admission (nothing to settle) and no telemetry (the trace records nowhere).
app.post('/v1/chat/completions', async (c) => {
  const trace = new RequestTrace({ model: c.get('config').modelId, keyId: null }, () => {})
  const request = (await c.req.json()) as UpstreamChatRequest
  // Hedging and the edge queue's place as the gateway's default key has them.
  const place = { keyId: 'bench-bare', priority: 'standard', weight: 1 } as const
  const input = relayInputOf(request, c.get('config').modelId, { gatewayMaxTokens: false, hedging: true, place })
  return relayChat(c, input, newChatRequestHold(trace))
})
app.onError(renderError)

// wrangler.toml binds the Durable Objects, so the bundle must export their classes (unused here).
export * from '../src/durable/index.ts'
export default app
