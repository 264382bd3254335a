// The OpenAI-compatible API under /v1: authentication, validation, then a generation
// streamed or answered on the emulated clock.

import type { IncomingMessage, ServerResponse } from 'node:http'
import { ANTHROPIC_PATHS, handleAnthropic } from './anthropic.ts'
import { modelsBody, requestId } from './bodies.ts'
import { errorBody, errorTypeForStatus, schemaErrorType, streamErrorEvent, type ApiError } from './errors.ts'
import { parseDirectives, parseFault, type Fault, type Overrides } from './faults.ts'
import { formatFor } from './formats.ts'
import { deadEngineRefusal } from './engine.ts'
import { answerGeneration, generationShape, streamGeneration, type Generation } from './generation.ts'
import { parseJson, readBody, sendJson, SSE_HEADERS } from './http.ts'
import type { EmulatorOptions } from './options.ts'
import { preprocess, preprocessMs } from './preprocess.ts'
import type { RecordedRequest } from './records.ts'
import { engineBook } from './request-ids.ts'
import type { EngineRefusal } from './request-params.ts'
import type { Admission } from './scheduler.ts'
import type { EmulatorState } from './state.ts'
import { validateGeneration, type Endpoint, type GenerationRequest } from './validate.ts'
import { DONE_EVENT } from './wire.ts'

const ENDPOINTS: Record<string, Endpoint> = { '/v1/chat/completions': 'chat', '/v1/completions': 'completion' }

function sendError(res: ServerResponse, options: EmulatorOptions, error: ApiError): void {
  sendJson(res, error.status, errorBody(options.errorFormat, error))
}

/**
 * vLLM's AuthenticationMiddleware (api_server.py): OPTIONS passes; otherwise the header splits at
 * its first space, the scheme is "bearer" in any case, and the rest must equal the key exactly.
 * Only paths starting with "/v1" are guarded (server.ts routes those here; control.ts guards the rest).
 */
export function authorized(options: EmulatorOptions, req: IncomingMessage): boolean {
  if (options.apiKey === null || req.method === 'OPTIONS') return true
  const header = req.headers.authorization ?? ''
  const space = header.indexOf(' ')
  const scheme = space === -1 ? header : header.slice(0, space)
  const param = space === -1 ? '' : header.slice(space + 1)
  return header !== '' && scheme.toLowerCase() === 'bearer' && param === options.apiKey
}

export async function handleV1(
  state: EmulatorState,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  receivedAt: number,
): Promise<void> {
  const isPost = req.method === 'POST'
  const rawBody = isPost ? await readBody(req) : ''
  const options = state.options // read after the body: a config change meanwhile applies
  const entry = state.requestLog.add(req.method ?? '', req.url ?? path, req.headers, rawBody ? (parseJson(rawBody) ?? null) : null)
  if (!authorized(options, req)) return sendJson(res, 401, JSON.stringify({ error: 'Unauthorized' }))
  if (rawBody === null) {
    return sendError(res, options, { status: 413, type: errorTypeForStatus(413), message: 'Request body too large' })
  }
  if (ANTHROPIC_PATHS.has(path)) return handleAnthropic(state, req, path, { req, res, rawBody, receivedAt, entry })
  const endpoint = ENDPOINTS[path]
  if (path === '/v1/models') {
    if (req.method !== 'GET') return sendJson(res, 405, JSON.stringify({ detail: 'Method Not Allowed' }))
    return sendJson(res, 200, modelsBody(options, state.startedAt))
  }
  if (endpoint === undefined) return sendJson(res, 404, JSON.stringify({ detail: 'Not Found' }))
  if (!isPost) return sendJson(res, 405, JSON.stringify({ detail: 'Method Not Allowed' }))
  await handleGeneration(state, options, endpoint, { req, res, rawBody, receivedAt, entry })
}

/** The JSON body of a generation request, or the 400 vLLM gives for a wrong media type or bad JSON. */
export function parseRequestBody(
  options: EmulatorOptions,
  req: IncomingMessage,
  rawBody: string,
): { ok: true; body: unknown } | { ok: false; error: ApiError } {
  const type = schemaErrorType(options.errorFormat)
  const mediaType = (req.headers['content-type'] ?? '').toLowerCase().split(';')[0]?.trim()
  if (mediaType !== 'application/json') {
    return { ok: false, error: { status: 400, type, message: `["Unsupported Media Type: Only 'application/json' is allowed"]` } }
  }
  const body = parseJson(rawBody)
  if (body === undefined) {
    const message =
      "[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error', 'input': {}, 'ctx': {'error': 'Expecting value'}}]"
    return { ok: false, error: { status: 400, type, message } }
  }
  return { ok: true, body }
}

/** One generation request on its way through the checks. */
export type Exchange = {
  req: IncomingMessage
  res: ServerResponse
  rawBody: string
  receivedAt: number
  entry: RecordedRequest
}

/**
 * What the engine refuses once the HTTP layer has accepted a request (Processor checks, a request
 * id already running). For a stream this comes after the 200, as the stream generator's except
 * clause sends it: one error event (code 400) and [DONE]; otherwise a 400 JSON body
 * (serving_chat.py chat_completion_stream_generator / chat_completion_full_generator).
 */
function refuseInEngine(options: EmulatorOptions, res: ServerResponse, stream: boolean, refusal: EngineRefusal): void {
  const error: ApiError = { status: 400, type: 'BadRequestError', message: refusal.message, param: refusal.param }
  if (!stream) return sendError(res, options, error)
  res.writeHead(200, SSE_HEADERS)
  res.write(streamErrorEvent(options.errorFormat, error))
  res.write(DONE_EVENT)
  res.end()
}

/** Validates, then hands the request to the scheduler (also used by /invocations). */
export async function handleGeneration(
  state: EmulatorState,
  options: EmulatorOptions,
  endpoint: Endpoint,
  exchange: Exchange,
): Promise<void> {
  const { req, res, rawBody } = exchange
  const parsed = parseRequestBody(options, req, rawBody)
  if (!parsed.ok) return sendError(res, options, parsed.error)
  const validated = validateGeneration(options, endpoint, parsed.body)
  // The dead-engine check comes before the prompt is preprocessed (serving_chat.py create_chat_completion).
  const dead = deadEngineRefusal(state.engine, validated.ok ? null : validated.error, options.vllmVersion)
  if (dead !== null) return sendError(res, options, dead)
  const preprocessed = validated.ok ? validated.request.preprocessed : validated.preprocessed
  if (preprocessed !== undefined && preprocessMs(options.preprocessMsPerToken, preprocessed) > 0) {
    await preprocess(state.apiLoop, options.preprocessMsPerToken, preprocessed)
    // A client that left meanwhile cancels the handler (entrypoints/utils.py with_cancellation, on the api_server.py routes): no engine request.
    if (res.destroyed) return
    // vLLM's request clock starts when the engine gets it, after preprocessing (v1/engine/processor.py process_inputs arrival_time).
    exchange.receivedAt = performance.now()
  }
  if (!validated.ok) return sendError(res, options, validated.error)
  const request = validated.request
  const header = req.headers['x-request-id']
  const id = requestId(endpoint === 'chat' ? 'chatcmpl-' : 'cmpl-', Array.isArray(header) ? header[0] : header, request.bodyRequestId)
  exchange.entry.vllm = { requestId: id, samplingParams: request.samplingParams, ignoredFields: request.ignoredFields }
  const directives = parseDirectives(request.texts)
  if (!directives.ok) return sendError(res, options, { status: 400, type: 'BadRequestError', message: directives.message })
  const fault: Fault = directives.overrides.fault ?? parseFault(options.fault) ?? { kind: 'none' }
  if (fault.kind === 'refuse') {
    const type = errorTypeForStatus(fault.status)
    return sendError(res, options, { status: fault.status, type, message: `Emulated refusal: ${fault.status} ${type}` })
  }
  const book = engineBook(state)
  // v0.11.0 refuses an id already running (v1/engine/output_processor.py add_request). v0.20.2 makes
  // every engine id unique, f"{external_req_id}-{random_uuid():.8}" (v1/engine/input_processor.py
  // assign_request_id), so two requests with one X-Request-Id both run, under the same response id.
  const duplicate = options.vllmVersion === '0.11.0' && book.running.has(id)
  const refusal = request.engineError ?? (duplicate ? { message: `Request id ${id} already running.`, param: null } : null)
  if (refusal !== null) return refuseInEngine(options, res, request.stream, refusal)
  book.running.add(id)
  if (options.enableServerLoadTracking) book.serverLoad += 1
  res.on('close', () => {
    book.running.delete(id)
    if (options.enableServerLoadTracking) book.serverLoad -= 1
  })
  admit(state, options, { ...request, id }, { ...directives.overrides, fault }, exchange)
}

/** Accepts the request: its 200 headers for a stream, then the scheduler's queue. */
function admit(
  state: EmulatorState,
  options: EmulatorOptions,
  request: GenerationRequest & { id: string },
  settings: Settings,
  exchange: Exchange,
): void {
  const { res, receivedAt } = exchange
  const { fault } = settings
  const gen = buildGeneration(state, options, request, settings, receivedAt)
  // A client that leaves ends its generation, running or still waiting for a slot.
  res.on('close', () => gen.tracker.finish('abort', performance.now()))
  const { stream, promptTokens } = request
  if (stream && fault.kind !== 'hang') {
    // vLLM answers a stream's headers at once, even while the request waits in the queue.
    state.telemetry.stats.streamsStarted += 1
    res.writeHead(200, SSE_HEADERS)
    res.flushHeaders()
  }
  const start = (admission: Admission) => {
    // hang: accepted (and holding its slot) but never answered, until the client gives up.
    if (fault.kind !== 'hang') startGeneration(state, options, gen, res, stream, admission)
  }
  // The prompt's prefix keys are hashed only now, for an accepted request, as vLLM hashes its blocks
  // only when the engine core builds the Request (v1/request.py Request.__init__, block_hasher).
  state.scheduler.submit({ promptTokens, priority: request.priority, prefixes: request.prefixes(), tracker: gen.tracker, start })
}

/** Runs an admitted generation: prefill (ttft plus the uncached prompt tokens' cost), then decode. */
function startGeneration(
  state: EmulatorState,
  options: EmulatorOptions,
  gen: Generation,
  res: ServerResponse,
  stream: boolean,
  admission: Admission,
): void {
  const uncachedTokens = Math.max(0, gen.promptTokens - admission.cachedTokens)
  const prefilled = options.prefillMsPerToken === 0 ? gen : { ...gen, ttftMs: gen.ttftMs + options.prefillMsPerToken * uncachedTokens }
  const cancel = stream ? streamGeneration(prefilled, res) : answerGeneration(prefilled, res)
  state.active.add(cancel)
  res.on('close', () => state.active.delete(cancel))
}

type Settings = Omit<Overrides, 'fault'> & { fault: Fault }

/** The decode slowdown per step: perSeq ms for every other sequence running at that step. */
function extraItlMs(state: EmulatorState, perSeq: number): () => number {
  return perSeq === 0 ? () => 0 : () => state.scheduler.decodeSlowdownMs(perSeq)
}

/** Accepts the request: counts it in flight and fixes its tokens, timing and wire shape (the prefix cache is consulted at admission). */
function buildGeneration(
  state: EmulatorState,
  options: EmulatorOptions,
  request: GenerationRequest & { id: string },
  settings: Settings,
  receivedAt: number,
): Generation {
  const { telemetry } = state
  const tracker = telemetry.begin(request.promptTokens, receivedAt)
  const wire = {
    id: request.id,
    created: Math.floor(Date.now() / 1000),
    model: options.servedModelName,
    reasoningField: options.reasoningField,
    tokenIdsFields: options.tokenIdsFields,
    reasoningParser: request.endpoint === 'chat' && options.reasoningParser === 'deepseek_r1',
  }
  const recordEvent = options.recordEventTimes ? (id: string, time: number) => state.eventTimes.record(id, time) : null
  return {
    ...generationShape(options, request, settings),
    promptTokens: request.promptTokens,
    includeUsage: request.includeUsage,
    continuousUsage: request.continuousUsage,
    wire,
    format: formatFor(request.endpoint, wire),
    ttftMs: settings.ttftMs ?? options.ttftMs,
    itlMs: settings.itlMs ?? options.itlMs,
    extraItlMs: extraItlMs(state, options.batchItlMsPerSeq),
    pause: settings.pauseAfter !== undefined && settings.pauseMs ? { afterChunks: settings.pauseAfter, ms: settings.pauseMs } : null,
    fault: settings.fault,
    errorFormat: options.errorFormat,
    vllmVersion: options.vllmVersion,
    engine: state.engine,
    tracker,
    recordEvent,
  }
}
