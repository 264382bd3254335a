// The fleet as data: what the fleet CLI writes to KV (namespace binding FLEET) and the Worker
// reads, and the health snapshot the Cron Trigger keeps beside it. Shared by the Worker and the
// CLI (scripts/fleet/), so it uses nothing runtime-specific. See docs/kv-schema.md.
import * as z from 'zod/mini'

/** KV key of the fleet record. */
export const FLEET_KEY = 'fleet:backends'
/** KV key of the health snapshot written by the cron probe. */
export const HEALTH_KEY = 'fleet:health'

export const BACKEND_STATES = ['active', 'draining'] as const
export type BackendState = (typeof BACKEND_STATES)[number]

export const REASONING_PARSERS = ['deepseek_r1', 'none'] as const
export type ReasoningParser = (typeof REASONING_PARSERS)[number]

const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/
export const ACCESS_SECRET_PATTERN = /^[A-Z0-9_]{1,32}$/

export const backendRecordSchema = z.object({
  /** Stable name, safe to log: lowercase letters, digits, '.', '_' and '-'. */
  id: z.string().check(z.regex(ID_PATTERN, 'id must be lowercase letters, digits, ".", "_" or "-" (at most 63)')),
  /** vLLM base URL without /v1, e.g. https://gpu-a.internal:8000 */
  url: z.string().check(z.regex(/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/, 'url must be an http(s) base URL without query or fragment')),
  /** Relative share of traffic when all else is equal (weighted choices, capacity). */
  weight: z.number().check(z.gt(0), z.lte(1000)),
  /** vLLM --max-num-seqs: sequences it runs at once; more wait in its queue. */
  maxConcurrency: z.int().check(z.gte(1), z.lte(100_000)),
  region: z.nullable(z.string().check(z.maxLength(64))),
  /** draining: finishes what it has, gets nothing new while another backend can serve. */
  state: z.enum(BACKEND_STATES),
  /**
   * vLLM's --reasoning-parser: `none` when the backend runs without one, so its reasoning comes
   * inside `content` and the gateway splits it at `</think>`. Absent means deepseek_r1.
   */
  reasoningParser: z.optional(z.enum(REASONING_PARSERS)),
  /**
   * The Cloudflare Access service token of this backend's tunnel: NAME selects the Worker secrets
   * ACCESS_CLIENT_ID_<NAME> and ACCESS_CLIENT_SECRET_<NAME>. Absent: the default pair
   * ACCESS_CLIENT_ID / ACCESS_CLIENT_SECRET, if set. A name, never the secret itself.
   */
  accessSecret: z.optional(z.string().check(z.regex(ACCESS_SECRET_PATTERN, 'accessSecret must be 1 to 32 of A-Z, 0-9 and "_"'))),
})

export type BackendRecord = z.infer<typeof backendRecordSchema>

export const fleetRecordSchema = z.object({
  version: z.literal(1),
  /** Unix ms of the last change. */
  updated: z.int(),
  backends: z
    .array(backendRecordSchema)
    .check(z.refine((list) => new Set(list.map((b) => b.id)).size === list.length, 'backend ids must be unique')),
})

export type FleetRecord = z.infer<typeof fleetRecordSchema>

/** One backend's health as the cron probe last saw it. */
export interface BackendHealth {
  /** /health answered 200 within the probe timeout. */
  healthy: boolean
  /** Unix ms of the probe. */
  checkedAt: number
  /** From /metrics: vllm:num_requests_running, vllm:num_requests_waiting, vllm:kv_cache_usage_perc. */
  running: number | null
  waiting: number | null
  kvCacheUsage: number | null
  /** Why it is unhealthy (status or error name); never a secret. */
  problem: string | null
}

export interface HealthSnapshot {
  /** Unix ms the probe ran. */
  at: number
  backends: Record<string, BackendHealth>
}

export function parseFleetRecord(value: unknown): FleetRecord | null {
  const result = fleetRecordSchema.safeParse(value)
  return result.success ? result.data : null
}

/** Normalizes a base URL the way the Worker uses it: no trailing slash. */
export function normalizeBackendUrl(url: string): string {
  return url.replace(/\/+$/, '')
}
