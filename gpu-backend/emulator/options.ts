// The emulator's settings: the vLLM flags it mirrors plus the emulator-only knobs.
// One plain JSON-able object, so the same shape serves the CLI, startEmulator() and
// POST /emulator/config.

import { parseFault } from './faults.ts'

/**
 * Which delta/message field carries the reasoning text, by vLLM era:
 * - reasoning_content: v0.7.2 to late 2025
 * - both: late 2025, `reasoning` plus a `reasoning_content` mirror present in every delta (null when not reasoning)
 * - reasoning: 2026 builds (#33402), `reasoning` only
 * - reasoning_null: some 2026 builds, `reasoning` plus `"reasoning_content": null` in every delta
 */
export type ReasoningField = 'reasoning_content' | 'both' | 'reasoning' | 'reasoning_null'

export const REASONING_FIELDS: readonly ReasoningField[] = ['reasoning_content', 'both', 'reasoning', 'reasoning_null']

/**
 * The vLLM release whose behaviours the emulator follows (README "Releases"): 0.20.2 (the default)
 * or 0.11.0. It sets the defaults of reasoningField and the error types, context-length texts,
 * usage defaults, request-id bookkeeping and metric names that changed between the two.
 */
export const VLLM_VERSIONS = ['0.20.2', '0.11.0'] as const
export type VllmVersion = (typeof VLLM_VERSIONS)[number]

/** The reasoning field a release sends: v0.11.0 `reasoning_content`; v0.20.2 `reasoning` only (openai/engine/protocol.py DeltaMessage). */
export function reasoningFieldFor(version: VllmVersion): ReasoningField {
  return version === '0.11.0' ? 'reasoning_content' : 'reasoning'
}

/** current = vLLM v0.10.1+ `{"error":{...}}`; legacy = v0.10.0 and earlier `{"object":"error",...}`. */
export type ErrorFormat = 'current' | 'legacy'

export type EmulatorOptions = {
  host: string
  /** 0 picks a free port (the default for startEmulator; the CLI defaults to vLLM's 8000). */
  port: number
  model: string
  servedModelName: string
  /** The vLLM release emulated (VLLM_VERSIONS); reasoningField follows it unless given. */
  vllmVersion: VllmVersion
  /** vLLM's --enable-request-id-headers: every response carries X-Request-Id (XRequestIdMiddleware). */
  enableRequestIdHeaders: boolean
  maxModelLen: number
  /** null: no authentication, like vLLM without --api-key. */
  apiKey: string | null
  /** null: no reasoning parser, so "...</think>\n\n..." all arrives in `content`, like vLLM. */
  reasoningParser: 'deepseek_r1' | null
  reasoningField: ReasoningField
  /** Newer builds add "prompt_token_ids":null / "token_ids":null to every response. */
  tokenIdsFields: boolean
  errorFormat: ErrorFormat
  ttftMs: number
  itlMs: number
  reasoningTokens: number
  contentTokens: number
  seed: number
  recordEventTimes: boolean
  /** Process-wide fault applied to every generation request ("none", "hang", "die_after:3", ...). */
  fault: string
  /** false: GET /health answers 503, as vLLM does when its engine is dead. */
  healthy: boolean
  // The load model (scheduler.ts); the defaults leave it off: no queue, fixed ttft and itl.
  /** vLLM's --max-num-seqs: generations running at once; the rest wait in the queue. null: no limit. */
  maxNumSeqs: number | null
  /**
   * vLLM's --scheduling-policy: the waiting queue's order. "fcfs": arrival; "priority": a request's
   * `priority` (lower first), then arrival (v1/core/sched/request_queue.py).
   */
  schedulingPolicy: SchedulingPolicy
  /** Prefill cost per prompt token the prefix cache does not cover, added to ttft. */
  prefillMsPerToken: number
  /** Decode slowdown: each step takes itl + this × (running sequences − 1). */
  batchItlMsPerSeq: number
  /** Prompt tokens the prefix cache holds at most (least recently used prefixes go first). */
  prefixCacheTokens: number
  /** KV-cache capacity in tokens for vllm:kv_cache_usage_perc; null: running requests / 64. */
  kvCacheTokens: number | null
  /** Engine steps whose outputs reach the API server as one delta (vLLM's RequestOutputCollector merge); 1: none merged. */
  mergeTokens: number
  /** true: the engine is dead (EngineDeadError), as after an EngineCore crash; false revives it (emulator only). */
  engineDead: boolean
  /** ms from engine death to the port closing (vLLM's watchdog polls every 5 s); null: stays open (VLLM_KEEP_ALIVE_ON_ENGINE_DEATH). */
  deadShutdownMs: number | null
  /** vLLM's --enable-server-load-tracking: GET /load counts generation requests in flight (else 0). */
  enableServerLoadTracking: boolean
  /** ms per prompt token of rendering and tokenizing before the answer (preprocess.ts); the render's share holds the API server's loop. */
  preprocessMsPerToken: number
  /** The API server's event loop runs this many ms behind: every request (not /emulator/*) is handled that late (api-loop.ts). */
  apiServerLagMs: number
}

export const DEFAULT_MODEL = 'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B'

export function defaultOptions(): EmulatorOptions {
  return {
    host: '127.0.0.1',
    port: 0,
    model: DEFAULT_MODEL,
    servedModelName: DEFAULT_MODEL,
    vllmVersion: '0.20.2',
    enableRequestIdHeaders: false,
    maxModelLen: 4096,
    apiKey: null,
    reasoningParser: null,
    reasoningField: reasoningFieldFor('0.20.2'),
    tokenIdsFields: true,
    errorFormat: 'current',
    ttftMs: 40,
    itlMs: 8,
    reasoningTokens: 24,
    contentTokens: 16,
    seed: 1,
    recordEventTimes: false,
    fault: 'none',
    healthy: true,
    maxNumSeqs: null,
    schedulingPolicy: 'fcfs',
    prefillMsPerToken: 0,
    batchItlMsPerSeq: 0,
    prefixCacheTokens: 200_000,
    kvCacheTokens: null,
    mergeTokens: 1,
    engineDead: false,
    deadShutdownMs: 5000,
    enableServerLoadTracking: false,
    preprocessMsPerToken: 0,
    apiServerLagMs: 0,
  }
}

/** vLLM's SchedulerConfig.policy values (config/scheduler.py SchedulerPolicy). */
export const SCHEDULING_POLICIES = ['fcfs', 'priority'] as const
export type SchedulingPolicy = (typeof SCHEDULING_POLICIES)[number]

export class OptionsError extends Error {}

type Check = (value: unknown) => boolean

const isNonNegativeInt: Check = (v) => Number.isInteger(v) && (v as number) >= 0
const isString: Check = (v) => typeof v === 'string' && v !== ''
const isBoolean: Check = (v) => typeof v === 'boolean'
const isPositiveIntOrNull: Check = (v) => v === null || (Number.isInteger(v) && (v as number) > 0)
const isNonNegativeNumber: Check = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0

const CHECKS: Record<keyof EmulatorOptions, [Check, string]> = {
  host: [isString, 'a non-empty string'],
  port: [(v) => isNonNegativeInt(v) && (v as number) <= 65535, 'an integer 0..65535'],
  model: [isString, 'a non-empty string'],
  servedModelName: [isString, 'a non-empty string'],
  vllmVersion: [(v) => VLLM_VERSIONS.includes(v as VllmVersion), VLLM_VERSIONS.map((v) => `"${v}"`).join(' or ')],
  enableRequestIdHeaders: [isBoolean, 'a boolean'],
  maxModelLen: [(v) => isNonNegativeInt(v) && (v as number) > 0, 'a positive integer'],
  apiKey: [(v) => v === null || isString(v), 'null or a non-empty string'],
  reasoningParser: [(v) => v === null || v === 'deepseek_r1', 'null or "deepseek_r1"'],
  reasoningField: [(v) => REASONING_FIELDS.includes(v as ReasoningField), REASONING_FIELDS.map((f) => `"${f}"`).join(', ')],
  tokenIdsFields: [isBoolean, 'a boolean'],
  errorFormat: [(v) => v === 'current' || v === 'legacy', '"current" or "legacy"'],
  ttftMs: [isNonNegativeInt, 'a non-negative integer'],
  itlMs: [isNonNegativeInt, 'a non-negative integer'],
  reasoningTokens: [isNonNegativeInt, 'a non-negative integer'],
  contentTokens: [isNonNegativeInt, 'a non-negative integer'],
  seed: [Number.isInteger, 'an integer'],
  recordEventTimes: [isBoolean, 'a boolean'],
  fault: [(v) => typeof v === 'string' && parseFault(v) !== null, 'a fault such as "none", "hang" or "die_after:3"'],
  healthy: [isBoolean, 'a boolean'],
  maxNumSeqs: [isPositiveIntOrNull, 'null or a positive integer'],
  schedulingPolicy: [(v) => SCHEDULING_POLICIES.includes(v as SchedulingPolicy), '"fcfs" or "priority"'],
  prefillMsPerToken: [isNonNegativeNumber, 'a non-negative number'],
  batchItlMsPerSeq: [isNonNegativeNumber, 'a non-negative number'],
  prefixCacheTokens: [isNonNegativeInt, 'a non-negative integer'],
  kvCacheTokens: [isPositiveIntOrNull, 'null or a positive integer'],
  mergeTokens: [(v) => isNonNegativeInt(v) && (v as number) > 0, 'a positive integer'],
  engineDead: [isBoolean, 'a boolean'],
  deadShutdownMs: [(v) => v === null || isNonNegativeInt(v), 'null or a non-negative integer'],
  enableServerLoadTracking: [isBoolean, 'a boolean'],
  preprocessMsPerToken: [isNonNegativeNumber, 'a non-negative number'],
  apiServerLagMs: [isNonNegativeInt, 'a non-negative integer'],
}

function isOptionName(name: string): name is keyof EmulatorOptions {
  return Object.hasOwn(CHECKS, name)
}

/**
 * Returns `base` with `patch` applied, after checking every key and value.
 * Throws OptionsError naming the first bad key, so a typo in a test never passes silently.
 */
export function mergeOptions(base: EmulatorOptions, patch: Readonly<Record<string, unknown>>): EmulatorOptions {
  const merged: Record<string, unknown> = { ...base }
  for (const [name, value] of Object.entries(patch)) {
    if (value === undefined) continue
    if (!isOptionName(name)) throw new OptionsError(`unknown option "${name}"`)
    const [check, expected] = CHECKS[name]
    if (!check(value)) throw new OptionsError(`option "${name}" must be ${expected}`)
    merged[name] = value
  }
  // served-model-name defaults to the model, as in vLLM, unless given explicitly.
  if (patch.model !== undefined && patch.servedModelName === undefined && base.servedModelName === base.model) {
    merged.servedModelName = merged.model
  }
  // The reasoning field follows the release, unless it was set apart from the release's default.
  if (
    patch.vllmVersion !== undefined &&
    patch.reasoningField === undefined &&
    base.reasoningField === reasoningFieldFor(base.vllmVersion)
  ) {
    merged.reasoningField = reasoningFieldFor(merged.vllmVersion as VllmVersion)
  }
  return merged as EmulatorOptions
}
