import type { Context } from 'hono'
import { ApiError } from '../errors.ts'

/** Reads a JSON request body: a non-JSON content type is 415, unparseable JSON is 400. */
export async function readJsonBody(c: Context): Promise<unknown> {
  const type = c.req.header('content-type') ?? ''
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(type.trim())) {
    throw new ApiError(415, "Unsupported content type: send the body as JSON with 'Content-Type: application/json'.", {
      code: 'unsupported_media_type',
    })
  }
  const text = await c.req.text()
  try {
    return JSON.parse(text) as unknown
  } catch {
    // The parser's own message quotes the body, which may hold a prompt: never pass it on.
    throw new ApiError(400, 'We could not parse the JSON body of your request.', { code: 'invalid_json' })
  }
}
