import { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { requestId } from 'hono/request-id'
import { loadConfig } from './config.ts'
import type { AppEnv } from './env.ts'
import { renderError } from './errors.ts'
import { chatCompletions } from './routes/chat.ts'
import { methodNotAllowed, notFound } from './routes/fallback.ts'
import { health } from './routes/health.ts'
import { listModels, retrieveModel } from './routes/models.ts'

/** Largest accepted request body. */
const MAX_BODY_BYTES = 1024 * 1024

const app = new Hono<AppEnv>()

app.use(requestId())
app.use(loadConfig)

app.get('/health', health)
app.all('/health', methodNotAllowed('GET'))

app.get('/v1/models', listModels)
app.all('/v1/models', methodNotAllowed('GET'))
app.get('/v1/models/:model', retrieveModel)
app.all('/v1/models/:model', methodNotAllowed('GET'))

app.post('/v1/chat/completions', bodyLimit({ maxSize: MAX_BODY_BYTES }), chatCompletions)
app.all('/v1/chat/completions', methodNotAllowed('POST'))

app.notFound(notFound)
app.onError(renderError)

export default app
