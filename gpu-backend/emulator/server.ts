// startEmulator(): a real HTTP server on loopback that speaks vLLM's OpenAI-compatible
// wire format, with controllable timing and fault injection. See README.md beside this file.

import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { applyConfig, handleControl } from './control.ts'
import { sendJson } from './http.ts'
import { defaultOptions, mergeOptions, type EmulatorOptions } from './options.ts'
import { createState, resetState, syncEngine, type EmulatorState } from './state.ts'
import type { LoadStats } from './scheduler.ts'
import type { EmulatorStats } from './stats.ts'
import { handleV1 } from './v1.ts'

export type { EmulatorOptions, ErrorFormat, ReasoningField, VllmVersion } from './options.ts'
export type { LoadStats } from './scheduler.ts'
export type { EmulatorStats } from './stats.ts'

export type Emulator = {
  /** http://127.0.0.1:PORT, no trailing slash. */
  url: string
  port: number
  /** The options in force now (POST /emulator/config and configure() change them). */
  readonly options: EmulatorOptions
  stats(): EmulatorStats
  /** The scheduler's state and prefix-cache counts (GET /emulator/stats adds them to stats()). */
  load(): LoadStats
  /** Zeroes counters, histograms and recorded requests, like POST /emulator/reset. */
  reset(): void
  /** Applies options at runtime, like POST /emulator/config; throws OptionsError on a bad one. */
  configure(patch: Partial<EmulatorOptions>): void
  /** Stops listening and ends every open stream and socket at once. */
  close(): Promise<void>
}

function handler(state: EmulatorState) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://emulator')
    const isV1 = url.pathname === '/v1' || url.pathname.startsWith('/v1/')
    // Counted on arrival, even while the API server's loop makes it wait.
    if (req.method === 'POST' && (isV1 || url.pathname === '/invocations')) state.telemetry.stats.requests += 1
    const run = () => {
      const receivedAt = performance.now()
      if (state.options.enableRequestIdHeaders && !url.pathname.startsWith('/emulator/')) setRequestIdHeader(req, res)
      const work = isV1 ? handleV1(state, req, res, url.pathname, receivedAt) : handleControl(state, req, res, url)
      work.catch((error: unknown) => {
        if (req.destroyed && res.destroyed) return // the client left while its body was being read
        console.error('vLLM emulator: request failed', error)
        if (!res.headersSent) sendJson(res, 500, JSON.stringify({ detail: 'Internal Server Error' }))
        else res.destroy()
      })
    }
    // The emulator's own controls are not vLLM's: they answer at once, whatever its loop is doing.
    if (url.pathname.startsWith('/emulator/')) return run()
    // Every vLLM route is handled on its API server's event loop: apiServerLagMs late (the lag in
    // force on arrival), then once no synchronous work (a chat template's render) holds the loop.
    state.apiLoop.enter(state.options.apiServerLagMs, run)
  }
}

/**
 * vLLM's XRequestIdMiddleware (--enable-request-id-headers; v0.11.0 api_server.py, v0.20.2
 * openai/server_utils.py, the same code): every response, on every route and a 401 included, carries
 * X-Request-Id, the request's own or a new uuid4().hex. Set before any writeHead, which merges it.
 */
function setRequestIdHeader(req: IncomingMessage, res: ServerResponse): void {
  const sent = req.headers['x-request-id']
  const id = Array.isArray(sent) ? sent[0] : sent
  res.setHeader('X-Request-Id', id ?? randomUUID().replaceAll('-', ''))
}

function listen(server: ReturnType<typeof createServer>, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}

export async function startEmulator(options: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  const state = createState(mergeOptions(defaultOptions(), options))
  const server = createServer(handler(state))
  const address = await listen(server, state.options.port, state.options.host)
  state.options = { ...state.options, port: address.port }
  // After engine death the port closes, as uvicorn's should_exit; streams still open may finish.
  state.engine.onShutdown = () => server.close()
  syncEngine(state) // started with engineDead: true
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  let closing: Promise<void> | null = null
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    get options() {
      return state.options
    },
    stats: () => ({ ...state.telemetry.stats }),
    load: () => state.scheduler.load(),
    reset: () => resetState(state),
    configure: (patch) => {
      applyConfig(state, patch)
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        state.engine.stop()
        state.apiLoop.close() // requests still waiting in the lag are dropped with their sockets
        state.scheduler.stop() // the waiting requests' clients are being disconnected below
        for (const cancel of state.active) cancel()
        state.active.clear()
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}
