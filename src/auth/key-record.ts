// API keys: their format, their hash and the record stored for them in KV. Shared by the Worker
// (auth middleware) and the key CLI (scripts/keys.ts), so it uses only WebCrypto and no runtime
// specifics. The secret itself is never stored: KV holds its SHA-256 hash.

/** What a key may do. `chat`: the inference API; `admin`: operational endpoints. */
export type Scope = 'chat' | 'admin'

/** Per-key limits; null means "the deployment default". Enforced by the rate-limit issue. */
export interface KeyLimits {
  requestsPerMinute: number | null
  tokensPerMinute: number | null
  concurrentStreams: number | null
  maxOutputTokens: number | null
  /**
   * Token budgets (prompt plus output tokens) per UTC day and per calendar month (UTC), enforced by
   * the key's limiter (src/limits/budget.ts). There is no deployment default for a budget: absent
   * or null, the key has none (records made before budgets have neither field).
   */
  budgetDay?: number | null
  budgetMonth?: number | null
}

/**
 * A key's priority class: the order its requests take in a backend's waiting queue, as vLLM's
 * per-request `priority` (docs/keys.md, Priority). Absent from a record: standard.
 */
export const PRIORITY_CLASSES = ['interactive', 'standard', 'batch'] as const
export type PriorityClass = (typeof PRIORITY_CLASSES)[number]

/**
 * A key's weight: its share of the fleet's edge queue within its priority class while the fleet is
 * full (docs/keys.md, Weight): a key of weight 2 is served twice as often as a key of weight 1 while
 * both wait. Absent from a record: DEFAULT_KEY_WEIGHT.
 */
export const DEFAULT_KEY_WEIGHT = 1
/**
 * The largest weight a record may carry. Bounded so that no key can starve every other in the
 * queue's virtual-time arithmetic (a huge weight advances its virtual time by next to nothing, so
 * its requests would always come first), and 1000:1 is already beyond any plan ratio.
 */
export const MAX_KEY_WEIGHT = 1000

/** A valid weight: a finite number > 0 and <= MAX_KEY_WEIGHT. */
export function isKeyWeight(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= MAX_KEY_WEIGHT
}

/**
 * The weight a key's requests carry: its record's `weight`, or DEFAULT_KEY_WEIGHT when the record
 * has none. Records are read from KV unchecked, so a stored value that is not a valid weight (hand
 * edited, or written by something other than the key CLI) counts as the default too.
 */
export function keyWeight(record: Pick<KeyRecord, 'weight'>): number {
  return isKeyWeight(record.weight) ? record.weight : DEFAULT_KEY_WEIGHT
}

export interface KeyRecord {
  /** Public identifier, safe to log: `key_` + 16 hex characters. */
  id: string
  name: string
  /** Unix seconds. */
  created: number
  /** Unix seconds, or null for a key that does not expire. */
  expires: number | null
  disabled: boolean
  limits: KeyLimits
  /** Browser origins (e.g. https://app.example.com) allowed to use this key; empty: none. */
  origins: string[]
  scopes: Scope[]
  /** Per-key switches for prompt rules; a rule missing here follows the deployment. */
  rules: Record<string, boolean>
  /** false: this key's requests are never hedged (docs/fleet.md, Hedging); absent or true: the deployment decides. */
  hedging?: boolean
  /** The key's priority class; absent: standard. */
  priority?: PriorityClass
  /** The key's share of the edge queue within its priority class (see keyWeight); absent: 1. */
  weight?: number
}

/** KV layout (namespace binding KEYS), see docs/kv-schema.md. */
export const KEY_PREFIX = 'key:'
export const KEY_ID_PREFIX = 'keyid:'

export const SECRET_PREFIX = 'sk-'
/** 32 random bytes, base64url: 43 characters after the prefix. */
const SECRET_PATTERN = /^sk-[A-Za-z0-9_-]{43}$/

export function isWellFormedSecret(secret: string): boolean {
  return SECRET_PATTERN.test(secret)
}

/** A new secret: `sk-` + 32 bytes (256 bits) from the platform's CSPRNG, base64url. */
export function generateSecret(): string {
  return SECRET_PREFIX + base64url(crypto.getRandomValues(new Uint8Array(32)))
}

export function generateKeyId(): string {
  return `key_${[...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, '0')).join('')}`
}

/** Lowercase hex SHA-256 of the secret: the KV key under KEY_PREFIX. */
export async function hashSecret(secret: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(secret))
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('')
}

export function newKeyRecord(fields: Partial<KeyRecord> & { name: string }, now = Date.now()): KeyRecord {
  return {
    id: fields.id ?? generateKeyId(),
    name: fields.name,
    created: fields.created ?? Math.floor(now / 1000),
    expires: fields.expires ?? null,
    disabled: fields.disabled ?? false,
    limits: fields.limits ?? { requestsPerMinute: null, tokensPerMinute: null, concurrentStreams: null, maxOutputTokens: null },
    origins: fields.origins ?? [],
    scopes: fields.scopes ?? ['chat'],
    rules: fields.rules ?? {},
    ...(fields.hedging === undefined ? {} : { hedging: fields.hedging }),
    ...(fields.priority === undefined ? {} : { priority: fields.priority }),
    ...(fields.weight === undefined ? {} : { weight: fields.weight }),
  }
}

export function base64url(bytes: Uint8Array): string {
  let binary = ''
  for (const byte of bytes) binary += String.fromCharCode(byte)
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')
}
