import { createMiddleware } from 'hono/factory'
import type { AppEnv, WorkerEnv } from './env.ts'
import { ApiError } from './errors.ts'
import { parseBackends, type Backend } from './fleet/backends.ts'

/** The deployment's settings, parsed and checked once per isolate rather than per request. */
export interface GatewayConfig {
  modelId: string
  /** Names clients may use for the model, MODEL_ID included. */
  modelNames: ReadonlySet<string>
  maxModelLen: number
  maxBodyBytes: number
  backends: readonly Backend[]
  backendApiKey: string | undefined
  keepAliveMs: number
  firstEventTimeoutMs: number
  eventIdleTimeoutMs: number
  allowedOrigins: ReadonlySet<string>
  keyCacheTtlMs: number
  /** HMAC secrets for stream tokens; the first signs. Empty: stream tokens are off. */
  streamTokenSecrets: readonly string[]
  promptRules: string
  templateAddsThink: boolean
}

const parsed = new WeakMap<WorkerEnv, GatewayConfig>()

export function readConfig(env: WorkerEnv): GatewayConfig {
  let config = parsed.get(env)
  if (!config) {
    config = {
      modelId: env.MODEL_ID,
      modelNames: new Set([env.MODEL_ID, ...list(env.MODEL_ALIASES)]),
      maxModelLen: positiveInteger('MAX_MODEL_LEN', env.MAX_MODEL_LEN),
      maxBodyBytes: positiveInteger('MAX_BODY_BYTES', env.MAX_BODY_BYTES),
      backends: parseBackends(env.BACKEND_URLS),
      backendApiKey: env.BACKEND_API_KEY || undefined,
      keepAliveMs: positiveInteger('KEEPALIVE_INTERVAL_MS', env.KEEPALIVE_INTERVAL_MS),
      firstEventTimeoutMs: positiveInteger('FIRST_EVENT_TIMEOUT_MS', env.FIRST_EVENT_TIMEOUT_MS),
      eventIdleTimeoutMs: positiveInteger('EVENT_IDLE_TIMEOUT_MS', env.EVENT_IDLE_TIMEOUT_MS),
      allowedOrigins: new Set(list(env.ALLOWED_ORIGINS)),
      keyCacheTtlMs: positiveInteger('KEY_CACHE_TTL_MS', env.KEY_CACHE_TTL_MS),
      streamTokenSecrets: list(env.STREAM_TOKEN_SECRETS ?? ''),
      promptRules: env.PROMPT_RULES,
      templateAddsThink: env.TEMPLATE_ADDS_THINK !== 'false',
    }
    parsed.set(env, config)
  }
  return config
}

/** Puts the parsed configuration on the context; a misconfigured deployment answers 500 with why. */
export const loadConfig = createMiddleware<AppEnv>(async function loadConfig(c, next) {
  c.set('config', readConfig(c.env))
  await next()
})

function list(value: string): string[] {
  return value.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')
}

function positiveInteger(name: string, value: string): number {
  const number = Number(value)
  if (!Number.isInteger(number) || number <= 0) {
    throw new ApiError(500, `Gateway misconfigured: ${name} must be a positive integer.`, {
      code: 'gateway_misconfigured',
    })
  }
  return number
}
