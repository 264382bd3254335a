// Shared helpers for the emulator tests: start an emulator for one test, post JSON. Reading SSE
// is in ../support/sse.ts.

import { onTestFinished } from 'vitest'
import { startEmulator, type Emulator, type EmulatorOptions } from '../../gpu-backend/emulator/server.ts'
import { loadTokenizer } from '../../gpu-backend/emulator/tokenizer.ts'

export const MODEL = 'deepseek-r1-distill-qwen-1.5b'

/** Fast timing and the production flags, unless a test overrides them. */
export const FAST: Partial<EmulatorOptions> = {
  servedModelName: MODEL,
  reasoningParser: 'deepseek_r1',
  ttftMs: 5,
  itlMs: 1,
}

/**
 * An emulator of vLLM v0.11.0 (`vllmVersion: '0.11.0'`), for the files that check that release's
 * wire: the reasoning_content field, its error types and texts, usage and request-id rules.
 */
export function emulatorV0110(options: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  return emulatorFor({ vllmVersion: '0.11.0', ...options })
}

/** An emulator on a free loopback port, closed when the test finishes (vLLM v0.20.2 unless told). */
export async function emulatorFor(options: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  await loadTokenizer() // once per test file; the first request would otherwise wait for it
  const emulator = await startEmulator({ ...FAST, ...options })
  onTestFinished(() => emulator.close())
  return emulator
}

export function post(
  emulator: Emulator,
  path: string,
  body: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${emulator.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: init.signal,
  })
}

/** A one-message chat request; `directive` is appended to the message as `[emulator ...]`. */
export function chatBody(directive = '', extra: Record<string, unknown> = {}): Record<string, unknown> {
  const suffix = directive === '' ? '' : ` [emulator ${directive}]`
  return { model: MODEL, messages: [{ role: 'user', content: `What is 2+2?${suffix}` }], ...extra }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `read` until it returns something `accept` likes, or fails after `timeoutMs`. */
export async function eventually<T>(read: () => T | Promise<T>, accept: (value: T) => boolean, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (accept(value) || Date.now() > deadline) return value
    await sleep(5)
  }
}
