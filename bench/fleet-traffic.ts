// The fleet benchmarks' shared parts (bench/fleet.ts, bench/fleet-tail.ts, bench/poison.ts): four emulated
// backends with the continuous-batching load model, multi-turn conversation turns sent through a
// gateway, open-loop Poisson load and the closed-loop capacity probe. Bounded: every load phase has
// a fixed duration and a drain limit.
import { spawnEmulator, type RunningEmulator } from '../scripts/stack.ts'
import type { Policy } from './fleet-report.ts'
import { conversationTurn, newConversation, type Conversation } from './fleet-workload.ts'

export const MAX_NUM_SEQS = 8
export const BACKEND_KEY = 'fleet-bench-backend-key'
export const ROOMY_LIMITS = {
  requestsPerMinute: 1_000_000,
  tokensPerMinute: 1_000_000_000,
  concurrentStreams: 10_000,
  maxOutputTokens: null,
}
const DRAIN_LIMIT_MS = 30_000
/** The load model of each backend (see gpu-backend/emulator/README.md, "Load model"). */
const EMULATOR_ARGS = [
  '--served-model-name',
  'deepseek-r1-distill-qwen-1.5b',
  '--reasoning-parser',
  'deepseek_r1',
  '--api-key',
  BACKEND_KEY,
  '--max-num-seqs',
  String(MAX_NUM_SEQS),
  '--ttft-ms',
  '15',
  '--prefill-ms-per-token',
  '0.1',
  '--itl-ms',
  '8',
  '--batch-itl-ms-per-seq',
  '1.5',
  '--reasoning-tokens',
  '16',
  '--content-tokens',
  '8',
]

/** Four backends with the load model; `extraArgs` adds emulator flags to each (bench/poison.ts: preprocessing). */
export async function startBackends(extraArgs: readonly string[] = []): Promise<RunningEmulator[]> {
  // One at a time: four Node processes starting at once on a busy 2-core machine can miss the start deadline.
  const backends: RunningEmulator[] = []
  for (let i = 0; i < 4; i++) backends.push(await spawnEmulator([...EMULATOR_ARGS, ...extraArgs]))
  return backends
}

/** Isolates send their telemetry this often in the fleet benchmarks, so counters settle soon after a phase. */
export const TELEMETRY_BATCH_MS = 250

/** A gateway's settings for one routing variant over `backends` (see POLICIES in fleet-report.ts). */
export function gatewayVars(policy: Policy, backends: RunningEmulator[]): Record<string, string> {
  return {
    BACKEND_URLS: backends.map((b) => b.url).join(','),
    BACKEND_API_KEY: BACKEND_KEY,
    BACKEND_MAX_CONCURRENCY: String(MAX_NUM_SEQS),
    ROUTING_POLICY: policy === 'weighted_random' || policy === 'round_robin' ? policy : 'smart',
    SLOT_LEDGERS: policy === 'smart_without_ledger' ? 'off' : 'on',
    TELEMETRY_BATCH_MS: String(TELEMETRY_BATCH_MS),
  }
}

export interface BackendTotals {
  requests: number
  prefixHitRequests: number
  /** Each backend's requests, in the order of `backends`. */
  perBackend: number[]
}

/** The emulators' counters summed over the fleet (since their last reset), and each one's requests. */
export async function backendTotals(backends: RunningEmulator[]): Promise<BackendTotals> {
  const all = await Promise.all(
    backends.map(async (b) => (await (await fetch(`${b.url}/emulator/stats`)).json()) as Omit<BackendTotals, 'perBackend'>),
  )
  return {
    requests: all.reduce((sum, s) => sum + s.requests, 0),
    prefixHitRequests: all.reduce((sum, s) => sum + s.prefixHitRequests, 0),
    perBackend: all.map((s) => s.requests),
  }
}

export async function resetBackends(backends: RunningEmulator[]): Promise<void> {
  await Promise.all(backends.map((b) => fetch(`${b.url}/emulator/reset`, { method: 'POST' })))
}

export interface Outcome {
  /** performance.now() when the request was sent. */
  sentAt: number
  /** The gateway's HTTP status (200 for a stream, even one that failed later); null when no answer came. */
  status: number | null
  /** What a failed answer said (answerOutcome), null for a complete stream or no answer. */
  error: string | null
  /** The client's time to its first data event, null when none came. */
  ttftMs: number | null
  followUp: boolean
  /** The gateway answered non-200: no backend saw the request. */
  refused: boolean
  /** Failed before any data event reached the client (what failover must prevent). */
  failedBeforeData: boolean
  failedMidStream: boolean
}

/** One chat turn through a gateway: its TTFT (first data event) or how it failed. */
export async function sendTurn(gatewayUrl: string, clientKey: string, conversation: Conversation): Promise<Outcome> {
  const followUp = conversation.turns > 0
  const sentAt = performance.now()
  let ttftMs: number | null = null
  let status: number | null = null
  let error: string | null = null
  const failed = (beforeData: boolean) => ({
    sentAt,
    status,
    error,
    ttftMs,
    followUp,
    refused: false,
    failedBeforeData: beforeData,
    failedMidStream: !beforeData,
  })
  try {
    const response = await fetch(`${gatewayUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` },
      body: JSON.stringify(conversationTurn(conversation)),
    })
    status = response.status
    if (!response.ok || !response.body) {
      error = answerOutcome(status, await response.text())
      return { sentAt, status, error, ttftMs, followUp, refused: true, failedBeforeData: true, failedMidStream: false }
    }
    const text = await readStream(response.body, () => (ttftMs ??= performance.now() - sentAt))
    if (!text.includes('data: {"error"'))
      return { sentAt, status, error, ttftMs, followUp, refused: false, failedBeforeData: false, failedMidStream: false }
    error = answerOutcome(status, text)
    return failed(ttftMs === null)
  } catch {
    return failed(ttftMs === null)
  }
}

/**
 * What a gateway answer said: a refusal's error code; for a 200, whether the stream completed or
 * what its error event said (the gateway's stream errors carry the status and message, no code).
 */
export function answerOutcome(status: number, text: string): string | null {
  if (status !== 200) return /"code":\s*"([a-z_]+)"/.exec(text)?.[1] ?? null
  const event = /^data: (\{"error".*)$/m.exec(text)?.[1]
  if (event === undefined) return text.includes('data: [DONE]') ? 'complete' : 'stream cut'
  try {
    const { error } = JSON.parse(event) as { error: { code?: unknown; message?: unknown } }
    // The message's first clause names the failure; the rest is advice.
    return `then error event ${String(error.code)}: ${String(error.message).split(/[.:] /)[0]?.replace(/\.$/, '')}`
  } catch {
    return 'then a malformed error event'
  }
}

async function readStream(body: ReadableStream<Uint8Array>, onFirstData: () => void): Promise<string> {
  const decoder = new TextDecoder()
  let text = ''
  let seenData = false
  for await (const chunk of body) {
    text += decoder.decode(chunk, { stream: true })
    // The first data event that is not an error: the first token reached the client. Searched
    // only until found, so the client's cost per chunk stays flat.
    if (!seenData && text.includes('data: {"id"')) {
      seenData = true
      onFirstData()
    }
  }
  return text
}

/**
 * Open-loop load for `durationMs`: turns arrive as a Poisson process at `rate` per second; each is
 * the next turn of a conversation whose previous turn has finished, or a new conversation (made by
 * `open`).
 */
export async function runLoad(
  gatewayUrl: string,
  clientKey: string,
  rate: number,
  durationMs: number,
  during?: (elapsedMs: number) => void,
  open: () => Conversation = newConversation,
): Promise<Outcome[]> {
  const ready: Conversation[] = []
  const pending: Promise<void>[] = []
  const outcomes: Outcome[] = []
  const begin = performance.now()
  let next = begin
  while (performance.now() - begin < durationMs) {
    next += -Math.log(1 - Math.random()) * (1000 / rate)
    const wait = next - performance.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    during?.(performance.now() - begin)
    const conversation = ready.length > 0 && Math.random() > 0.2 ? (ready.shift() as Conversation) : open()
    pending.push(
      sendTurn(gatewayUrl, clientKey, conversation).then((outcome) => {
        outcomes.push(outcome)
        conversation.turns++
        if (!conversation.finished()) ready.push(conversation)
      }),
    )
  }
  const deadline = new Promise((_, reject) =>
    setTimeout(() => reject(new Error('requests still running after the drain limit')), DRAIN_LIMIT_MS),
  )
  await Promise.race([Promise.all(pending), deadline])
  return outcomes
}

/** Requests per second the fleet completes when kept full (closed loop, 6 s): the 100% of the load levels. */
export async function measureCapacity(gatewayUrl: string, clientKey: string, open: () => Conversation = newConversation): Promise<number> {
  let done = 0
  const begin = performance.now()
  const worker = async () => {
    while (performance.now() - begin < 6_000) {
      await sendTurn(gatewayUrl, clientKey, open())
      done++
    }
  }
  await Promise.all(Array.from({ length: 4 * MAX_NUM_SEQS }, worker))
  return done / ((performance.now() - begin) / 1000)
}
