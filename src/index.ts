import { Hono } from 'hono'
import { requestId } from 'hono/request-id'
import type { AppEnv, WorkerEnv } from './env.ts'
import { loadConfig } from './middleware/config.ts'
import { runHealthProbe } from './fleet/probe.ts'
import { renderError } from './errors.ts'
import { requireKey } from './middleware/auth.ts'
import { limitBody } from './middleware/body-limit.ts'
import { apiCors } from './middleware/cors.ts'
import { sameOriginOnly } from './middleware/same-origin.ts'
import { responseMetrics } from './middleware/response-metrics.ts'
import { chatCompletions } from './routes/chat.ts'
import { responses } from './routes/responses.ts'
import { countTokens, messages } from './routes/messages.ts'
import { anthropicErrors } from './messages/error-format.ts'
import { deleteResponse, listInputItems, retrieveResponse } from './routes/stored-responses.ts'
import { methodNotAllowed, notFound } from './routes/fallback.ts'
import { health } from './routes/health.ts'
import { home } from './routes/home.ts'
import { keyLimits } from './routes/key-limits.ts'
import { keyBoard, keyUsage } from './routes/key-usage.ts'
import { revokeKeyNow } from './routes/key-revocation.ts'
import {
  createDashboardLink,
  dashboardData,
  dashboardKeyUsage,
  dashboardKeys,
  dashboardScript,
  dashboardStyle,
  login,
  logout,
  openLink,
  showDashboard,
  showLogin,
} from './routes/dashboard.ts'
import { dashboardSession } from './dashboard/auth.ts'
import { latency } from './routes/latency.ts'
import { metrics } from './routes/metrics.ts'
import { listModels, retrieveModel } from './routes/models.ts'
import { createStreamToken } from './routes/stream-tokens.ts'
import { cancelStream, createStream, streamEvents } from './routes/streams.ts'
import { playgroundPage, playgroundScript, playgroundStyle } from './routes/playground.ts'

const app = new Hono<AppEnv>()
const chatScope = requireKey({ scope: 'chat' })
// Routes that start a generation: their admission refuses a revoked key, so its check runs beside them.
const generationScope = requireKey({ scope: 'chat', generation: true })
// The Anthropic Messages API takes the key in x-api-key too, as Anthropic's SDKs send it.
const messagesScope = requireKey({ scope: 'chat', acceptXApiKey: true })
const messagesGenerationScope = requireKey({ scope: 'chat', acceptXApiKey: true, generation: true })
const adminScope = requireKey({ scope: 'admin' })

app.use(requestId())
app.use(loadConfig)
app.use(responseMetrics)
app.use('/v1/*', apiCors)

// What the printed address shows: links to the pages, the API and the docs (no key needed).
app.get('/', home)
app.get('/health', health)
app.all('/health', methodNotAllowed('GET'))

app.get('/v1/models', chatScope, listModels)
app.all('/v1/models', methodNotAllowed('GET'))
app.get('/v1/models/:model', chatScope, retrieveModel)
app.all('/v1/models/:model', methodNotAllowed('GET'))

app.post('/v1/chat/completions', generationScope, limitBody, chatCompletions)
app.all('/v1/chat/completions', methodNotAllowed('POST'))
// The OpenAI Responses API, translated onto the chat path, and its stored responses (docs/api.md).
app.post('/v1/responses', generationScope, limitBody, responses)
app.all('/v1/responses', methodNotAllowed('POST'))
app.get('/v1/responses/:id', chatScope, retrieveResponse)
app.delete('/v1/responses/:id', chatScope, deleteResponse)
app.all('/v1/responses/:id', methodNotAllowed('GET', 'DELETE'))
app.get('/v1/responses/:id/input_items', chatScope, listInputItems)
app.all('/v1/responses/:id/input_items', methodNotAllowed('GET'))

// The Anthropic Messages API, translated onto the chat path (docs/api.md): its errors, those
// raised before the route included, in Anthropic's shape.
app.use('/v1/messages', anthropicErrors)
app.use('/v1/messages/*', anthropicErrors)
app.post('/v1/messages', messagesGenerationScope, limitBody, messages)
app.all('/v1/messages', methodNotAllowed('POST'))
app.post('/v1/messages/count_tokens', messagesScope, limitBody, countTokens)
app.all('/v1/messages/count_tokens', methodNotAllowed('POST'))

app.post('/v1/stream-tokens', chatScope, limitBody, createStreamToken)
app.all('/v1/stream-tokens', methodNotAllowed('POST'))

// Browser stream sessions (docs/streams.md): created with a key or a stream token; the event URL
// carries its own signature, since EventSource cannot send a header.
app.post('/v1/streams', requireKey({ scope: 'chat', acceptStreamToken: true, generation: true }), limitBody, createStream)
app.all('/v1/streams', methodNotAllowed('POST'))
app.get('/v1/streams/:id/events', streamEvents)
app.all('/v1/streams/:id/events', methodNotAllowed('GET'))
app.post('/v1/streams/:id/cancel', cancelStream)
app.all('/v1/streams/:id/cancel', methodNotAllowed('POST'))

// The playground: a chat page on the stream sessions (no key needed to load it).
app.get('/playground', playgroundPage)
app.get('/playground/app.js', playgroundScript)
app.get('/playground/style.css', playgroundStyle)

app.get('/v1/keys/:id/limits', adminScope, keyLimits)
app.all('/v1/keys/:id/limits', methodNotAllowed('GET'))
// A key's usage per UTC day from its limiter, and the keys nearest their budgets and flagged (docs/keys.md).
app.get('/v1/keys/:id/usage', adminScope, keyUsage)
app.all('/v1/keys/:id/usage', methodNotAllowed('GET'))
app.get('/v1/keys/board', adminScope, keyBoard)
app.all('/v1/keys/board', methodNotAllowed('GET'))
app.post('/v1/keys/:id/revoke', adminScope, revokeKeyNow)
app.all('/v1/keys/:id/revoke', methodNotAllowed('POST'))

app.get('/v1/latency', adminScope, latency)
app.all('/v1/latency', methodNotAllowed('GET'))
app.get('/metrics', adminScope, metrics)
app.all('/metrics', methodNotAllowed('GET'))
app.post('/v1/dashboard/links', adminScope, createDashboardLink)
app.all('/v1/dashboard/links', methodNotAllowed('POST'))

// The dashboard: pages for people, signed in with a session cookie (docs/observability.md).
app.get('/dashboard', dashboardSession('page'), showDashboard)
app.get('/dashboard/data', dashboardSession('data'), dashboardData)
app.get('/dashboard/keys', dashboardSession('data'), dashboardKeys)
app.get('/dashboard/keys/:id/usage', dashboardSession('data'), dashboardKeyUsage)
app.get('/dashboard/app.js', dashboardSession('data'), dashboardScript)
app.get('/dashboard/style.css', dashboardStyle)
app.get('/dashboard/login', showLogin)
app.post('/dashboard/login', sameOriginOnly, limitBody, login)
app.get('/dashboard/link', openLink)
app.post('/dashboard/logout', sameOriginOnly, logout)

app.notFound(notFound)
app.onError(renderError)

// Named, not `export *`: `wrangler types` reads this module's exports without bundling it, and
// types a Durable Object binding's stub only for a class it sees exported here by name.
export { BackendSlots, DashboardLink, KeyLimiter, ResponseStore, StreamSession, TelemetryAggregator } from './durable/index.ts'
export default {
  fetch: app.fetch,
  // Cron Trigger (wrangler.toml [triggers]): the fleet's health snapshot, once a minute.
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(runHealthProbe(env))
  },
} satisfies ExportedHandler<WorkerEnv>
