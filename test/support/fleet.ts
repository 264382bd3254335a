// The three fleet emulators of the Worker tests, a fleet record in the FLEET namespace, and calls
// with changed settings whose streams can be read before their waitUntil work is awaited.
import { env } from 'cloudflare:workers'
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import app from '../../src/index.ts'
import { FLEET_KEY, type BackendRecord } from '../../src/fleet/records.ts'

export const fleetUrls = (env as unknown as { FLEET_EMULATOR_URLS: string }).FLEET_EMULATOR_URLS.split(',') as [string, string, string]

async function post(url: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  })
  if (!response.ok) throw new Error(`emulator ${path}: ${response.status}`)
  return response.json()
}

/** Resets every fleet emulator's counters and gives each the fault it should have (default none). */
export async function prepareFleet(faults: Partial<Record<0 | 1 | 2, string>> = {}): Promise<void> {
  await Promise.all(
    fleetUrls.map(async (url, index) => {
      await post(url, '/emulator/reset')
      await post(url, '/emulator/config', { fault: faults[index as 0 | 1 | 2] ?? 'none' })
    }),
  )
}

export async function fleetStats(): Promise<{ requests: number; completed: number; inFlight: number; maxInFlight: number }[]> {
  return Promise.all(
    fleetUrls.map(
      async (url) =>
        (await (await fetch(`${url}/emulator/stats`)).json()) as {
          requests: number
          completed: number
          inFlight: number
          maxInFlight: number
        },
    ),
  )
}

export function backendRecord(index: 0 | 1 | 2, fields: Partial<BackendRecord> = {}): BackendRecord {
  return { id: `gpu-${'abc'[index]}`, url: fleetUrls[index], weight: 1, maxConcurrency: 64, region: null, state: 'active', ...fields }
}

export async function writeFleet(backends: BackendRecord[]): Promise<void> {
  await env.FLEET.put(FLEET_KEY, JSON.stringify({ version: 1, updated: Date.now(), backends }))
}

export async function clearFleet(): Promise<void> {
  await env.FLEET.delete(FLEET_KEY)
}

/** Settings every fleet test starts from: no fleet cache, realistic circuit breaking. */
export const FLEET_TEST_ENV = {
  FLEET_CACHE_TTL_MS: '1',
  FLEET_STALE_MAX_MS: '0',
  CIRCUIT_CONSECUTIVE_FAILURES: '3',
  CIRCUIT_FAILURE_RATE: '0.5',
  CIRCUIT_COOLDOWN_MS: '300',
}

export type TestEnv = typeof env

/**
 * One environment for a test: the isolate keeps its live stats (in flight, TTFT, circuits) per
 * configuration, so calls that share this object share them, as requests of one deployment do.
 */
export function fleetEnv(overrides: Record<string, string> = {}): TestEnv {
  return { ...env, ...FLEET_TEST_ENV, BACKEND_URLS: fleetUrls.join(','), ...overrides }
}

/**
 * Calls the app in `testEnv` and returns at once, so a stream can be read; `settled` waits for
 * the request's waitUntil work (rate-limit settlement) afterwards.
 */
export async function callIn(testEnv: TestEnv, path: string, init: RequestInit) {
  const ctx = createExecutionContext()
  const response = await app.fetch(new Request(`http://gateway.test${path}`, init), testEnv, ctx)
  return { response, settled: () => waitOnExecutionContext(ctx) }
}
