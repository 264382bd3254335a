import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'

/** DeepSeek-R1's release day (2025-01-20), a stable `created` for the one model served. */
const MODEL_CREATED = 1737331200

function modelCard(id: string) {
  return { id, object: 'model' as const, created: MODEL_CREATED, owned_by: 'deepseek-ai' }
}

/** GET /v1/models. Answered from configuration: listing models never costs a backend call. */
export function listModels(c: Context<AppEnv>): Response {
  return c.json({ object: 'list', data: [modelCard(c.get('config').modelId)] })
}

/** GET /v1/models/:model */
export function retrieveModel(c: Context<AppEnv>): Response {
  const id = c.req.param('model') ?? ''
  if (!c.get('config').modelNames.has(id)) {
    throw new ApiError(404, `The model '${id}' does not exist.`, { param: 'model', code: 'model_not_found' })
  }
  return c.json(modelCard(c.get('config').modelId))
}
