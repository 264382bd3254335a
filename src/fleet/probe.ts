// The Cron Trigger's health probe: every backend's /health and /metrics, kept as one snapshot in
// KV (HEALTH_KEY) that every isolate reads with the fleet record. Runs once a minute, so the key
// is written once a minute: far inside KV's one write per second per key.
import { readConfig } from '../config.ts'
import type { WorkerEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { backendHeaders, credentialsFrom, type BackendCredentials } from './access.ts'
import { HEALTH_KEY, type BackendHealth, type BackendRecord, type HealthSnapshot } from './records.ts'
import { clearFleetCache, loadFleet } from './registry.ts'

export interface ProbeOptions {
  credentials: BackendCredentials
  timeoutMs: number
}

/** The snapshot expires by itself if the cron stops: no stale health outlives 10 minutes. */
export const HEALTH_TTL_S = 600

export async function probeFleet(backends: readonly BackendRecord[], options: ProbeOptions, now = Date.now()): Promise<HealthSnapshot> {
  const results = await Promise.all(backends.map(async (backend) => [backend.id, await probeBackend(backend, options, now)] as const))
  return { at: now, backends: Object.fromEntries(results) }
}

export async function saveSnapshot(kv: KVNamespace, snapshot: HealthSnapshot): Promise<void> {
  await kv.put(HEALTH_KEY, JSON.stringify(snapshot), { expirationTtl: HEALTH_TTL_S })
}

async function probeBackend(backend: BackendRecord, options: ProbeOptions, now: number): Promise<BackendHealth> {
  const unhealthy = (problem: string): BackendHealth => ({
    healthy: false,
    checkedAt: now,
    running: null,
    waiting: null,
    kvCacheUsage: null,
    problem,
  })
  let headers: Record<string, string>
  try {
    headers = backendHeaders(backend, options.credentials)
  } catch (error) {
    // The message names the missing secret, never a value: safe in the snapshot.
    return unhealthy(error instanceof ApiError ? error.message : 'credentials')
  }
  let health: Response
  try {
    // Not following redirects: Access sends a refused token to its login page, which answers 200.
    health = await fetch(`${backend.url}/health`, { headers, redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs) })
    await health.body?.cancel()
  } catch (error) {
    return unhealthy(error instanceof Error ? error.name : 'unreachable')
  }
  if (!health.ok) return unhealthy(`health status ${health.status}`)
  const load = await readLoad(backend, headers, options.timeoutMs)
  return { healthy: true, checkedAt: now, ...load, problem: null }
}

/** Running and waiting requests and KV-cache usage from vLLM's Prometheus text; nulls if absent. */
export async function readLoad(backend: BackendRecord, headers: Record<string, string>, timeoutMs: number) {
  try {
    const response = await fetch(`${backend.url}/metrics`, { headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) })
    if (!response.ok) {
      await response.body?.cancel()
      return { running: null, waiting: null, kvCacheUsage: null }
    }
    return parseLoad(await response.text())
  } catch {
    return { running: null, waiting: null, kvCacheUsage: null }
  }
}

/**
 * Sums each gauge over its label sets (one per engine in a data-parallel server). The KV-cache
 * gauge had another name before vLLM V1 (`vllm:gpu_cache_usage_perc`); either is read.
 */
export function parseLoad(text: string): { running: number | null; waiting: number | null; kvCacheUsage: number | null } {
  const sums = new Map<string, number>()
  for (const line of text.split('\n')) {
    const match = /^(vllm:[a-z_]+)(?:\{[^}]*\})?\s+([-+0-9.eE]+|NaN)\s*$/.exec(line)
    if (!match) continue
    const [, name = '', value = ''] = match
    const number = Number(value)
    if (Number.isFinite(number)) sums.set(name, (sums.get(name) ?? 0) + number)
  }
  return {
    running: sums.get('vllm:num_requests_running') ?? null,
    waiting: sums.get('vllm:num_requests_waiting') ?? null,
    kvCacheUsage: sums.get('vllm:kv_cache_usage_perc') ?? sums.get('vllm:gpu_cache_usage_perc') ?? null,
  }
}

/** The Cron Trigger: probe the fleet as configured now and store the snapshot. */
export async function runHealthProbe(env: WorkerEnv): Promise<HealthSnapshot> {
  const config = readConfig(env)
  const fleet = await loadFleet(env.FLEET, config.fleet.fallback, 0)
  const snapshot = await probeFleet(fleet.backends, {
    credentials: credentialsFrom(env, config.backendApiKey),
    timeoutMs: PROBE_TIMEOUT_MS,
  })
  await saveSnapshot(env.FLEET, snapshot)
  clearFleetCache(env.FLEET)
  return snapshot
}

/** A backend that cannot answer /health within this is unhealthy. */
const PROBE_TIMEOUT_MS = 2_000
