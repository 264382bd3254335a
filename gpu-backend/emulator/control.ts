// Endpoints outside /v1: vLLM's /health and /metrics, and the emulator-only /emulator/*
// controls tests use to read counters, reset them and change behaviour at runtime.

import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseJson, readBody, sendEmpty, sendJson, sendText } from './http.ts'
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics.ts'
import { mergeOptions, OptionsError, type EmulatorOptions } from './options.ts'
import type { LoadStats } from './scheduler.ts'
import { handleDetokenize, handleInvocations, handleLoad, handleTokenize, handleVersion } from './open-routes.ts'
import { resetState, syncEngine, type EmulatorState } from './state.ts'
import type { EmulatorStats } from './stats.ts'
import { authorized } from './v1.ts'

function sendProblem(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, JSON.stringify({ error: message }))
}

/**
 * Applies a runtime options patch. host and port describe the listening socket,
 * so they cannot change while it listens.
 */
export function applyConfig(state: EmulatorState, patch: Readonly<Record<string, unknown>>): EmulatorOptions {
  for (const fixed of ['host', 'port'] as const) {
    if (patch[fixed] !== undefined && patch[fixed] !== state.options[fixed]) {
      throw new OptionsError(`option "${fixed}" cannot change while the emulator is listening`)
    }
  }
  state.options = mergeOptions(state.options, patch)
  // A larger --max-num-seqs admits waiting requests now; a smaller prefix cache evicts now.
  state.scheduler.admit()
  state.prefixCache.evict()
  syncEngine(state)
  return state.options
}

async function handleConfig(state: EmulatorState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const raw = await readBody(req)
  const patch = raw === null ? undefined : parseJson(raw)
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
    return sendProblem(res, 400, 'the body must be a JSON object of options')
  }
  try {
    sendJson(res, 200, JSON.stringify(applyConfig(state, patch as Record<string, unknown>)))
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error
    sendProblem(res, 400, error.message)
  }
}

/** GET /emulator/stats: the counters, then the scheduler's state and prefix-cache counts. */
function statsBody(state: EmulatorState): EmulatorStats & LoadStats {
  return { ...state.telemetry.stats, ...state.scheduler.load() }
}

function handleEventTimes(state: EmulatorState, res: ServerResponse, url: URL): void {
  if (!state.options.recordEventTimes) return sendProblem(res, 404, 'event times are not recorded; start with --record-event-times')
  const id = url.searchParams.get('id')
  if (id === null || id === '') return sendProblem(res, 400, 'give the response id: ?id=chatcmpl-...')
  const times = state.eventTimes.get(id)
  if (times === undefined) return sendProblem(res, 404, `no event times for ${id}`)
  sendJson(res, 200, JSON.stringify({ id, times }))
}

type Route = (state: EmulatorState, req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>

const ROUTES: Record<string, Route> = {
  'GET /health': (state, _req, res) => sendEmpty(res, state.options.healthy && !state.engine.dead ? 200 : 503),
  'GET /metrics': (state, _req, res) => {
    const { scheduler } = state
    const load = { running: scheduler.running.size, waiting: scheduler.waiting.length, kvCacheUsage: scheduler.kvCacheUsage() }
    sendText(res, 200, METRICS_CONTENT_TYPE, renderMetrics(state.telemetry, state.options.servedModelName, load, state.options.vllmVersion))
  },
  'GET /emulator/stats': (state, _req, res) => sendJson(res, 200, JSON.stringify(statsBody(state))),
  'POST /emulator/reset': (state, _req, res) => {
    resetState(state)
    sendJson(res, 200, JSON.stringify(statsBody(state)))
  },
  // vLLM's routes outside /v1, which its API key does not guard (api_server.py).
  'GET /ping': (state, req, res, url) => health(state, req, res, url),
  'POST /ping': (state, req, res, url) => health(state, req, res, url),
  'GET /load': (state, _req, res) => handleLoad(state, res),
  'GET /version': (state, _req, res) => handleVersion(state, res),
  'POST /tokenize': handleTokenize,
  'POST /detokenize': handleDetokenize,
  'POST /invocations': handleInvocations,
  'POST /emulator/config': handleConfig,
  'GET /emulator/requests': (state, _req, res) => sendJson(res, 200, JSON.stringify(state.requestLog.entries)),
  'GET /emulator/event-times': (state, _req, res, url) => handleEventTimes(state, res, url),
}

const KNOWN_PATHS = new Set(Object.keys(ROUTES).map((key) => key.split(' ')[1]))

/** /ping answers as /health does (api_server.py: `return await health(raw_request)`). */
function health(state: EmulatorState, req: IncomingMessage, res: ServerResponse, url: URL): void | Promise<void> {
  const route = ROUTES['GET /health']
  return route === undefined ? undefined : route(state, req, res, url)
}

/** Routes a request outside /v1; unknown paths get FastAPI's 404/405 bodies. */
export async function handleControl(state: EmulatorState, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  // The key guards every path that starts with "/v1" (a prefix test: "/v1x" too); server.ts sends
  // "/v1" and "/v1/..." to v1.ts, so only such neighbours reach this check.
  if (url.pathname.startsWith('/v1') && !authorized(state.options, req))
    return sendJson(res, 401, JSON.stringify({ error: 'Unauthorized' }))
  const route = ROUTES[`${req.method ?? ''} ${url.pathname}`]
  if (route !== undefined) return route(state, req, res, url)
  if (KNOWN_PATHS.has(url.pathname)) return sendJson(res, 405, JSON.stringify({ detail: 'Method Not Allowed' }))
  sendJson(res, 404, JSON.stringify({ detail: 'Not Found' }))
}
