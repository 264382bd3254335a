// bench:poison's traffic besides the steady key's (bench/fleet-traffic.ts runLoad): the poison
// key's closed-loop requests, alternating two shapes, and a monitor of which backends are out of
// rotation, read from the emulators' request counters. Bounded: a poison request is cut when its
// phase is over (`cut`), and every poll has a deadline.
import type { RunningEmulator } from '../scripts/stack.ts'
import { answerOutcome } from './fleet-traffic.ts'

/**
 * hang: the emulator accepts the request and never answers, not even its headers (faults.ts
 * `hang`), holding a slot until the gateway gives up. slow: a prompt of about 3,400 tokens, which
 * fits the 4096-token context, so only the backend's preprocessing (ms per prompt token before the
 * headers) makes it slow.
 */
const MODEL = 'deepseek-r1-distill-qwen-1.5b'

export const POISON_SHAPES = ['hang', 'slow'] as const
export type PoisonShape = (typeof POISON_SHAPES)[number]

/** Words the slow prompt repeats: one BPE token each with its leading space. */
const FILLER = ['alpha', 'beta', 'gamma', 'delta', 'kappa', 'sigma', 'omega', 'theta']
/** Filler words in the slow prompt: with the chat template, about 3,400 prompt tokens. */
export const SLOW_PROMPT_WORDS = 3_380

export function poisonBody(shape: PoisonShape): Record<string, unknown> {
  const nonce = Math.random().toString(36).slice(2)
  const content =
    shape === 'hang'
      ? `[emulator fault=hang] Poison ${nonce}.`
      : `Poison ${nonce}: ${Array.from({ length: SLOW_PROMPT_WORDS }, (_, i) => FILLER[i % FILLER.length]).join(' ')}`
  return { model: MODEL, stream: true, max_tokens: 16, messages: [{ role: 'user', content }] }
}

/** The slow shape's prompt tokens as the backend counts them (vLLM's POST /tokenize). */
export async function slowPromptTokens(backend: RunningEmulator): Promise<number> {
  const { messages } = poisonBody('slow')
  const response = await fetch(`${backend.url}/tokenize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages }),
    signal: AbortSignal.timeout(10_000),
  })
  return ((await response.json()) as { count: number }).count
}

export interface PoisonOutcome {
  shape: PoisonShape
  /** The gateway's status, or `cut` (still running when the phase ended) or `network` (no answer). */
  status: number | 'cut' | 'network'
  /** The error body's `code` (e.g. backends_unavailable); for a 200, the stream's end (answerOutcome). */
  code: string | null
  ms: number
}

/** A 429's back-off: what the gateway asks (retry-after-ms), kept between 100 ms and 1 s. */
function backoffMs(response: Response): number {
  const asked = Number(response.headers.get('retry-after-ms') ?? Number.NaN)
  return Number.isFinite(asked) ? Math.min(1_000, Math.max(100, asked)) : 500
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function sendPoison(gatewayUrl: string, key: string, shape: PoisonShape, cut: AbortSignal): Promise<[PoisonOutcome, number]> {
  const sentAt = performance.now()
  const done = (status: PoisonOutcome['status'], code: string | null, waitMs = 0): [PoisonOutcome, number] => [
    { shape, status, code, ms: Math.round(performance.now() - sentAt) },
    waitMs,
  ]
  try {
    const response = await fetch(`${gatewayUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(poisonBody(shape)),
      signal: cut,
    })
    const text = await response.text()
    return done(response.status, answerOutcome(response.status, text), response.status === 429 ? backoffMs(response) : 0)
  } catch {
    return done(cut.aborted ? 'cut' : 'network', null)
  }
}

/**
 * The poison key at its own limits: `concurrency` requests in flight, each sent as the previous
 * one ends, the shapes taken in turn, until `stop` aborts; a 429 is followed by a short back-off.
 * Requests still running when `cut` aborts are counted `cut`.
 */
export async function runPoison(
  gatewayUrl: string,
  key: string,
  concurrency: number,
  stop: AbortSignal,
  cut: AbortSignal,
): Promise<PoisonOutcome[]> {
  const outcomes: PoisonOutcome[] = []
  let sent = 0
  const worker = async () => {
    while (!stop.aborted) {
      const shape = POISON_SHAPES[sent++ % POISON_SHAPES.length] as PoisonShape
      const [outcome, waitMs] = await sendPoison(gatewayUrl, key, shape, cut)
      outcomes.push(outcome)
      if (waitMs > 0 && !stop.aborted) await sleep(waitMs)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return outcomes
}

/** bench:poison's rule: a span in which the fleet received this many new requests and a backend none. */
export const ROTATION_MIN_FLEET_REQUESTS = 8
const POLL_MS = 250

/**
 * Polls every backend's /emulator/stats every 250 ms until stopped. The fleet's new requests are
 * summed over consecutive polls until they reach ROTATION_MIN_FLEET_REQUESTS (at 50% load about
 * 5 arrive in 250 ms, so a single poll would rarely qualify); each backend that received none of
 * them in that span was out of rotation for its length. Returns each backend's seconds out.
 */
export function watchRotation(backends: RunningEmulator[]): { stop(): Promise<number[]> } {
  const out = backends.map(() => 0)
  let stopped = false
  const counts = () =>
    Promise.all(
      backends.map(async (b) => {
        const response = await fetch(`${b.url}/emulator/stats`, { signal: AbortSignal.timeout(2_000) })
        return ((await response.json()) as { requests: number }).requests
      }),
    )
  const loop = (async () => {
    let base = await counts()
    let since = performance.now()
    while (!stopped) {
      await sleep(POLL_MS)
      const now = await counts()
      const fresh = now.map((n, i) => n - (base[i] ?? 0))
      if (fresh.reduce((sum, n) => sum + n, 0) < ROTATION_MIN_FLEET_REQUESTS) continue
      const at = performance.now()
      fresh.forEach((n, i) => {
        if (n === 0) out[i] = (out[i] ?? 0) + (at - since) / 1000
      })
      base = now
      since = at
    }
  })()
  return {
    async stop() {
      stopped = true
      await loop
      return out
    },
  }
}
