// Helpers for tests that drive the Worker inside workerd against the emulator on loopback.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env, exports } from 'cloudflare:workers'
import app from '../../src/index.ts'
import { TEST_SECRET } from './keys.ts'

export const MODEL = 'deepseek-r1-distill-qwen-1.5b'
export const emulatorUrl = env.BACKEND_URLS

/** The slice of the emulator's /emulator/stats these tests read. */
export interface EmulatorStats {
  requests: number
  completed: number
  aborted: number
  inFlight: number
  maxInFlight: number
  tokensGenerated: number
  promptTokens: number
  faulted: number
}

export interface RecordedRequest {
  method: string
  path: string
  headers: Record<string, string>
  body: Record<string, unknown> | null
}

export function chatBody(text: string, extra: Record<string, unknown> = {}) {
  return { model: MODEL, messages: [{ role: 'user', content: text }], ...extra }
}

/** POST /v1/chat/completions through the Worker's own entry point, as a client would. */
export function postChat(body: unknown, init: { headers?: Record<string, string>; signal?: AbortSignal; secret?: string } = {}) {
  return exports.default.fetch('http://gateway.test/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${init.secret ?? TEST_SECRET}`, ...init.headers },
    body: JSON.stringify(body),
    signal: init.signal,
  })
}

/** Calls the app with some settings changed, e.g. a short first-event deadline. */
export async function fetchWithEnv(overrides: Record<string, unknown>, path: string, init: RequestInit): Promise<Response> {
  const ctx = createExecutionContext()
  const response = await app.fetch(new Request(`http://gateway.test${path}`, init), { ...env, ...overrides }, ctx)
  await waitOnExecutionContext(ctx)
  return response
}

export function chatInit(body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_SECRET}` },
    body: JSON.stringify(body),
  }
}

/** Any call to the Worker with the test key. */
export function callWorker(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers)
  if (!headers.has('authorization')) headers.set('authorization', `Bearer ${TEST_SECRET}`)
  return exports.default.fetch(`http://gateway.test${path}`, { ...init, headers })
}

async function emulator<T>(path: string, init?: RequestInit): Promise<T> {
  const response = await fetch(`${emulatorUrl}${path}`, init)
  if (!response.ok) throw new Error(`emulator ${path}: ${response.status}`)
  return (await response.json()) as T
}

export const emulatorStats = () => emulator<EmulatorStats>('/emulator/stats')
export const resetEmulator = () => emulator<unknown>('/emulator/reset', { method: 'POST' })
export const configureEmulator = (patch: Record<string, unknown>) =>
  emulator<unknown>('/emulator/config', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(patch) })
export const recordedRequests = () => emulator<RecordedRequest[]>('/emulator/requests')
