import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import type { ConversationItem } from '../responses/items.ts'
import { deleteStoredResponse, readInputItems, readStoredResponse } from '../responses/store.ts'

// Stored responses read back and deleted, as OpenAI's Responses API does (docs/api.md, Stored
// responses). A key sees only its own: another key's id is the same 404 as one never stored.

function notFound(id: string): ApiError {
  return new ApiError(404, `Response with id '${id}' not found.`, { param: 'response_id', code: 'response_not_found' })
}

/** GET /v1/responses/:id: the response object as it was finished. */
export async function retrieveResponse(c: Context<AppEnv>): Promise<Response> {
  refuseQuery(c, [])
  const id = c.req.param('id') ?? ''
  const response = await readStoredResponse(c.env, c.get('principal').keyId, id)
  if (!response) throw notFound(id)
  return c.json(response)
}

/** DELETE /v1/responses/:id: OpenAI's deletion object; the response is gone everywhere at once. */
export async function deleteResponse(c: Context<AppEnv>): Promise<Response> {
  refuseQuery(c, [])
  const id = c.req.param('id') ?? ''
  if (!(await deleteStoredResponse(c.env, c.get('principal').keyId, id))) throw notFound(id)
  return c.json({ id, object: 'response', deleted: true })
}

const PAGE_MAX = 100
const PAGE_DEFAULT = 20

/**
 * GET /v1/responses/:id/input_items: the items the model was given for the response (the turns it
 * continued, then its request's input), a page at a time as OpenAI lists them: `order` desc
 * (default) or asc, `limit` 1-100 (default 20), `after` an item id. `include` asks for content
 * these text items never have (images, file search results): it adds nothing.
 */
export async function listInputItems(c: Context<AppEnv>): Promise<Response> {
  refuseQuery(c, ['after', 'limit', 'order', 'include'])
  const { after, limit, order } = pageOf(c)
  const id = c.req.param('id') ?? ''
  const items = await readInputItems(c.env, c.get('principal').keyId, id)
  if (!items) throw notFound(id)
  const ordered = order === 'asc' ? items : [...items].reverse()
  const start = after === null ? 0 : ordered.findIndex((item) => item.id === after) + 1
  if (after !== null && start === 0)
    throw new ApiError(400, `No input item with id '${after}' in this response.`, { param: 'after', code: 'item_not_found' })
  const data: ConversationItem[] = ordered.slice(start, start + limit)
  return c.json({
    object: 'list',
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: start + limit < ordered.length,
  })
}

function pageOf(c: Context<AppEnv>): { after: string | null; limit: number; order: 'asc' | 'desc' } {
  const order = c.req.query('order') ?? 'desc'
  if (order !== 'asc' && order !== 'desc') throw invalidQuery('order', "must be 'asc' or 'desc'")
  const limitText = c.req.query('limit')
  const limit = limitText === undefined ? PAGE_DEFAULT : Number(limitText)
  if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_MAX) throw invalidQuery('limit', `must be an integer from 1 to ${PAGE_MAX}`)
  return { after: c.req.query('after') ?? null, limit, order }
}

function invalidQuery(param: string, why: string): ApiError {
  return new ApiError(400, `Invalid value for '${param}': ${why}.`, { param, code: 'invalid_value' })
}

/** A query parameter not taken is a 400, as an unknown body field is: nothing is ignored silently. */
function refuseQuery(c: Context<AppEnv>, taken: readonly string[]): void {
  for (const name of Object.keys(c.req.queries())) {
    if (!taken.includes(name.replace(/\[\]$/, ''))) {
      throw new ApiError(400, `Unrecognized query parameter: '${name}'.`, { param: name, code: 'unknown_parameter' })
    }
  }
}
