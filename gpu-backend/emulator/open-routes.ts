// Routes vLLM v0.11.0 registers outside /v1 (api_server.py; v0.20.2: entrypoints/serve/), so its API key never guards them:
// /ping, /load, /version, /tokenize, /detokenize and /invocations, which runs a chat completion.

import type { IncomingMessage, ServerResponse } from 'node:http'
import { renderChat } from './chat-template.ts'
import { errorBody, type ApiError } from './errors.ts'
import { readBody, sendJson } from './http.ts'
import type { EmulatorOptions } from './options.ts'
import { formatErrors, isDict, type Dict, type PydanticError } from './pydantic.ts'
import { preprocess, preprocessMs } from './preprocess.ts'
import { engineBook } from './request-ids.ts'
import type { EmulatorState } from './state.ts'
import { decodeIds, encodeCompletionPrompt, encodeText, tokenStrings } from './tokenizer.ts'
import { handleGeneration, parseRequestBody } from './v1.ts'
import { validateGeneration } from './validate.ts'

function sendError(res: ServerResponse, options: EmulatorOptions, error: ApiError): void {
  sendJson(res, error.status, errorBody(options.errorFormat, error))
}

/** GET /load: {"server_load": N}; N stays 0 without --enable-server-load-tracking (load_aware_call). */
export function handleLoad(state: EmulatorState, res: ServerResponse): void {
  sendJson(res, 200, JSON.stringify({ server_load: engineBook(state).serverLoad }))
}

/** GET /version: {"version": vllm.__version__}, the release emulated. */
export function handleVersion(state: EmulatorState, res: ServerResponse): void {
  sendJson(res, 200, JSON.stringify({ version: state.options.vllmVersion }))
}

/** The JSON body of an open POST route, or the error already sent. */
async function jsonBody(state: EmulatorState, req: IncomingMessage, res: ServerResponse): Promise<{ body: unknown; raw: string } | null> {
  const raw = await readBody(req)
  const options = state.options
  if (raw === null) {
    sendError(res, options, { status: 413, type: 'PayloadTooLargeError', message: 'Request body too large' })
    return null
  }
  const parsed = parseRequestBody(options, req, raw)
  if (!parsed.ok) {
    sendError(res, options, parsed.error)
    return null
  }
  return { body: parsed.body, raw }
}

function wrongModel(options: EmulatorOptions, body: Dict): ApiError | null {
  if (body.model === undefined || body.model === null || body.model === options.servedModelName) return null
  return { status: 404, type: 'NotFoundError', message: `The model \`${String(body.model)}\` does not exist.` }
}

/**
 * TokenizeRequest = Union[TokenizeCompletionRequest (prompt), TokenizeChatRequest (messages)]; a chat
 * request renders the chat template first (_preprocess_chat), a prompt is only tokenized (renderer.py).
 */
function tokenizeIds(body: Dict): { ids: number[]; chatTemplate: boolean } | { errors: PydanticError[] } {
  if (typeof body.prompt === 'string') {
    return { ids: encodeCompletionPrompt(body.prompt, body.add_special_tokens !== false), chatTemplate: false }
  }
  if (Array.isArray(body.messages)) {
    const messages = (body.messages as unknown[]).filter(isDict).map((m) => ({ role: String(m.role), content: m.content }))
    return { ids: encodeText(renderChat(messages, body.add_generation_prompt !== false).segments.join('')), chatTemplate: true }
  }
  const missing = (member: string, field: string): PydanticError => ({
    type: 'missing',
    loc: ['body', member, field],
    msg: 'Field required',
  })
  return { errors: [missing('TokenizeCompletionRequest', 'prompt'), missing('TokenizeChatRequest', 'messages')] }
}

/** POST /tokenize (serving_tokenization.py create_tokenize): TokenizeResponse, fields in its order. */
export async function handleTokenize(state: EmulatorState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const input = await jsonBody(state, req, res)
  if (input === null) return
  const options = state.options
  const body = isDict(input.body) ? input.body : {}
  const result = tokenizeIds(body)
  if ('errors' in result) {
    return sendError(res, options, { status: 400, type: 'Bad Request', message: formatErrors(result.errors) })
  }
  const refused = wrongModel(options, body)
  if (refused !== null) return sendError(res, options, refused)
  // The same preprocessing as a generation request's, after the model check (serving_tokenization.py create_tokenize).
  const preprocessed = { tokens: result.ids.length, chatTemplate: result.chatTemplate }
  if (preprocessMs(options.preprocessMsPerToken, preprocessed) > 0) {
    await preprocess(state.apiLoop, options.preprocessMsPerToken, preprocessed)
    if (res.destroyed) return
  }
  const tokenStrs = body.return_token_strs === true ? tokenStrings(result.ids) : null
  const response = { count: result.ids.length, max_model_len: options.maxModelLen, tokens: result.ids, token_strs: tokenStrs }
  sendJson(res, 200, JSON.stringify(response))
}

/** POST /detokenize: {"prompt": text}, special tokens kept. */
export async function handleDetokenize(state: EmulatorState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const input = await jsonBody(state, req, res)
  if (input === null) return
  const options = state.options
  const body = isDict(input.body) ? input.body : {}
  const tokens = body.tokens
  if (!Array.isArray(tokens) || !tokens.every((id) => Number.isInteger(id))) {
    const error: PydanticError =
      tokens === undefined
        ? { type: 'missing', loc: ['body', 'tokens'], msg: 'Field required' }
        : { type: 'list_type', loc: ['body', 'tokens'], msg: 'Input should be a valid list of integers' }
    return sendError(res, options, { status: 400, type: 'Bad Request', message: formatErrors([error]) })
  }
  const refused = wrongModel(options, body)
  if (refused !== null) return sendError(res, options, refused)
  sendJson(res, 200, JSON.stringify({ prompt: decodeIds(tokens as number[]) }))
}

/**
 * POST /invocations (SageMaker): the body goes to the first request model that validates it,
 * ChatCompletionRequest then CompletionRequest (INVOCATION_TYPES, for a generate model), and on to
 * that endpoint's handler, with no API key. No model fits: a 400 naming the ones tried.
 */
export async function handleInvocations(state: EmulatorState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const receivedAt = performance.now() // stats.requests counts it on arrival (server.ts)
  const input = await jsonBody(state, req, res)
  if (input === null) return
  const entry = state.requestLog.add(req.method ?? '', req.url ?? '/invocations', req.headers, input.body)
  const options = state.options
  for (const endpoint of ['chat', 'completion'] as const) {
    const validated = validateGeneration(options, endpoint, input.body)
    if (!validated.ok && validated.schema === true) continue
    return handleGeneration(state, options, endpoint, { req, res, rawBody: input.raw, receivedAt, entry })
  }
  const message = "Cannot find suitable handler for request. Expected one of: ['ChatCompletionRequest', 'CompletionRequest']"
  sendError(res, options, { status: 400, type: 'BadRequestError', message })
}
