// Benchmark-only entry: the production Worker (src/index.ts) as a caller far from its Durable
// Objects and KV sees it. Every call on a Durable Object stub (all six bindings) and every
// KV operation (KEYS, FLEET, LATENCY) waits BENCH_DO_RTT_MS / BENCH_KV_RTT_MS before it is made, one
// round trip each; BENCH_BACKEND_RTT_MS does the same for the Worker's outbound fetches (the backend).
// Only the Worker's own calls are delayed: calls the Durable Objects make among themselves are not.
// Never deployed: `npm run bench` builds it as its own bundle (dist/distance/), and the production
// entry never imports it (test/scripts/bench-entries.test.ts checks the production build).
import worker from '../src/index.ts'
import type { WorkerEnv } from '../src/env.ts'

// Every Durable Object class wrangler.toml binds (one list, src/durable/index.ts).
export * from '../src/durable/index.ts'

interface DistanceVars {
  BENCH_DO_RTT_MS?: string
  BENCH_KV_RTT_MS?: string
  BENCH_BACKEND_RTT_MS?: string
}

const DO_BINDINGS = ['LIMITER', 'TELEMETRY', 'STREAMS', 'DASHBOARD_LINKS', 'BACKEND_SLOTS', 'RESPONSES'] as const
const KV_BINDINGS = ['KEYS', 'FLEET', 'LATENCY'] as const

function rtt(value: string | undefined): number {
  const ms = Number(value ?? 0)
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`a BENCH_*_RTT_MS setting must be a number of ms >= 0, got ${value}`)
  return ms
}

const wait = (ms: number): Promise<void> => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve())

type Callable = Record<string, (...args: unknown[]) => unknown>

/**
 * `target` with each of its methods called after `ms`, as `target.name(...)`: RPC stubs and KV
 * bindings are native objects that want their methods called on themselves. Not thenable.
 */
function delayedMethods<T extends object>(target: T, ms: number): T {
  const methods = target as unknown as Callable
  return new Proxy({} as T, {
    get(_, name) {
      if (typeof name !== 'string' || name === 'then') return undefined
      return async (...args: unknown[]) => {
        await wait(ms)
        return methods[name]?.(...args)
      }
    },
  })
}

/** A namespace whose stubs delay every call by `ms`; making ids stays synchronous and free. */
function distantNamespace<T extends DurableObjectNamespace<undefined>>(namespace: T, ms: number): T {
  const distant = {
    idFromName: (name: string) => namespace.idFromName(name),
    idFromString: (id: string) => namespace.idFromString(id),
    newUniqueId: (options?: DurableObjectNamespaceNewUniqueIdOptions) => namespace.newUniqueId(options),
    get: (id: DurableObjectId, options?: DurableObjectNamespaceGetDurableObjectOptions) => delayedMethods(namespace.get(id, options), ms),
    getByName: (name: string, options?: DurableObjectNamespaceGetDurableObjectOptions) =>
      delayedMethods(namespace.get(namespace.idFromName(name), options), ms),
  }
  return distant as unknown as T
}

/** One wrapped env per env: module caches keyed by a binding (the fleet view) keep working. */
const distantEnvs = new WeakMap<WorkerEnv, WorkerEnv>()
let backendRttMs = 0

function distantEnv(env: WorkerEnv): WorkerEnv {
  const known = distantEnvs.get(env)
  if (known) return known
  const vars = env as WorkerEnv & DistanceVars
  const doMs = rtt(vars.BENCH_DO_RTT_MS)
  const kvMs = rtt(vars.BENCH_KV_RTT_MS)
  backendRttMs = rtt(vars.BENCH_BACKEND_RTT_MS)
  const wrapped: WorkerEnv = { ...env }
  for (const name of DO_BINDINGS)
    Object.assign(wrapped, { [name]: distantNamespace(env[name] as unknown as DurableObjectNamespace<undefined>, doMs) })
  for (const name of KV_BINDINGS) Object.assign(wrapped, { [name]: delayedMethods(env[name], kvMs) })
  distantEnvs.set(env, wrapped)
  return wrapped
}

// The backend's distance: the Worker calls its backends with the global fetch.
const directFetch = globalThis.fetch
globalThis.fetch = async (input, init) => {
  await wait(backendRttMs)
  return directFetch(input, init)
}

export default {
  fetch: (request, env, ctx) => worker.fetch(request, distantEnv(env), ctx),
  scheduled: (controller, env, ctx) => worker.scheduled(controller, distantEnv(env), ctx),
} satisfies ExportedHandler<WorkerEnv>
