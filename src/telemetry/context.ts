import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { recordRequest, sendSoon } from './buffer.ts'
import { reasonOfCode, type EndReason } from '../ending.ts'
import { RequestTrace } from './trace.ts'

/**
 * Starts the trace of a chat request. Its record goes to the isolate's telemetry buffer when it
 * finishes, and the request stays alive (ctx.waitUntil) until that record has been sent, however
 * long the stream runs and whether or not the client stayed.
 */
export function startRequestTrace(c: Context<AppEnv>): RequestTrace {
  const { modelId, telemetry } = c.get('config')
  let recorded!: () => void
  const done = new Promise<void>((resolve) => (recorded = resolve))
  c.executionCtx.waitUntil(done.then(() => sendSoon(c.env, telemetry.batchMs)))
  return new RequestTrace({ model: modelId, keyId: c.get('principal').keyId }, (record) => {
    recordRequest(record)
    recorded()
  })
}

/** Ends a trace with the error that ended its request. */
export function finishWithError(trace: RequestTrace, error: unknown): void {
  const status = error instanceof ApiError ? error.status : 500
  trace.finish(errorReason(trace, error), status)
}

/** Why a request that failed with `error` ended: refused before any backend was asked, or what its error code says. */
export function errorReason(trace: RequestTrace, error: unknown): EndReason {
  const code = error instanceof ApiError ? error.code : null
  // A client that left before any backend was asked still left: it was not refused.
  if (code === 'client_closed_request') return 'client_gone'
  if (!trace.askedBackend) return 'refused'
  return reasonOfCode(code)
}
