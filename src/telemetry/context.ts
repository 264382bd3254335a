import type { Context } from 'hono'
import type { AppEnv, WorkerEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { recordRequest, sendSoon } from './buffer.ts'
import { reasonOfCode, type EndReason } from '../ending.ts'
import { RequestTrace, type TraceIdentity } from './trace.ts'

/**
 * Starts the trace of a chat request. Its record goes to the isolate's telemetry buffer when it
 * finishes, and the request stays alive (ctx.waitUntil) until that record has been sent, however
 * long the stream runs and whether or not the client stayed.
 */
export function startRequestTrace(c: Context<AppEnv>): RequestTrace {
  const { modelId, telemetry } = c.get('config')
  return tracedUntilSent(c.executionCtx, c.env, telemetry.batchMs, { model: modelId, keyId: c.get('principal').keyId })
}

/**
 * The trace and its send, apart from startRequestTrace so that its closures (which live as long as
 * the stream) hold the env and nothing else of the request: closures made in a function share one
 * V8 context, and one that named `c` would keep the Hono context, with the request and its cached
 * body, alive until the stream ends (bench/results/memory-retention.md).
 */
function tracedUntilSent(
  ctx: Pick<Context<AppEnv>['executionCtx'], 'waitUntil'>,
  env: WorkerEnv,
  batchMs: number,
  identity: TraceIdentity,
): RequestTrace {
  let recorded!: () => void
  const done = new Promise<void>((resolve) => (recorded = resolve))
  ctx.waitUntil(done.then(() => sendSoon(env, batchMs)))
  return new RequestTrace(identity, (record) => {
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
