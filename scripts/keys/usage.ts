// The key CLI's calls to the Worker's admin API. `keys usage`: a key's effective limits and live
// usage, from GET /v1/keys/:id/limits (src/routes/key-limits.ts); the counts live in the key's
// limiter, a Durable Object only the Worker can reach, so this asks the Worker rather than KV.
// `keys dashboard-link`: a dashboard sign-in link from POST /v1/dashboard/links.
// `keys usage --days N`: the key's requests and tokens per UTC day from GET /v1/keys/:id/usage;
// `keys board`: the keys nearest their budgets and the flagged keys from GET /v1/keys/board.
import { columns } from '../cli-support.ts'

/** fetch, or a stand-in for it in tests. */
export type Fetcher = (url: string, init: RequestInit) => Promise<Response>

interface Window {
  limit: number
  remaining: number
  /** Until the window is empty again, in milliseconds; 0 when it already is. */
  reset_ms: number
}

/** The Worker's answer (snake_case, as on the wire). */
export interface KeyUsage {
  object: 'key.limits'
  key_id: string
  /** False on a deployment with RATE_LIMITS=off: the numbers are what would apply. */
  enforced: boolean
  /** The key's priority class (standard when its record has none); absent from a Worker older than it. */
  priority?: string
  /** The key's weight in the edge queue (1 when its record has none); absent from a Worker older than it. */
  weight?: number
  limits: {
    requests_per_minute: number
    tokens_per_minute: number
    concurrent_streams: number
    concurrent_streams_per_ip: number | null
    max_output_tokens: number | null
  }
  source: Record<'requests_per_minute' | 'tokens_per_minute' | 'concurrent_streams', string>
  /**
   * The key's token budgets per UTC day and month (null: none for the period); used counts the
   * reservations of requests in flight; resets_at in Unix seconds. Absent from a Worker older than budgets.
   */
  budgets?: Record<'day' | 'month', { limit: number; used: number; remaining: number; resets_at: number } | null>
  usage: {
    in_flight: number
    requests: Window
    tokens: Window
    totals: {
      admitted: number
      refused: Record<string, number>
      prompt_tokens: number
      completion_tokens: number
      expired_leases: number
    }
  }
}

const TIMEOUT_MS = 30_000
const DEV_HINT = 'Is the Worker running? npm start serves it at http://127.0.0.1:8787.'

/**
 * An admin call to the Worker: the parsed JSON answer of a 2xx, or an Error with the Worker's own
 * message. `url`: the Worker's address without a trailing slash, as parseCommand leaves it.
 */
async function askWorker(
  fetcher: Fetcher,
  url: string,
  path: string,
  adminKey: string,
  method = 'GET',
): Promise<{ endpoint: string; answer: unknown }> {
  const endpoint = `${url}${path}`
  let response: Response
  let body: string
  try {
    response = await fetcher(endpoint, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, accept: 'application/json' },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    })
    body = await response.text()
  } catch (error) {
    if (error instanceof Error && error.name === 'TimeoutError')
      throw new Error(`No answer from ${url} within ${TIMEOUT_MS / 1000} s. ${DEV_HINT}`)
    throw new Error(`Could not reach ${url} (${reason(error)}). ${DEV_HINT}`)
  }
  const answer = parseJson(body)
  if (!response.ok) {
    const message = errorMessage(answer)
    throw new Error(
      message === undefined
        ? `${endpoint} answered HTTP ${response.status}, without an error message.`
        : `${message} (HTTP ${response.status})`,
    )
  }
  return { endpoint, answer }
}

export async function fetchKeyUsage(fetcher: Fetcher, url: string, id: string, adminKey: string): Promise<KeyUsage> {
  const { endpoint, answer } = await askWorker(fetcher, url, `/v1/keys/${encodeURIComponent(id)}/limits`, adminKey)
  if (!isKeyUsage(answer)) throw new Error(`${endpoint} did not answer with a key.limits object: is ${url} this project's Worker?`)
  return answer
}

export interface KeyRevocation {
  object: 'key.revocation'
  key_id: string
  name: string
  revoked: true
  already_revoked: boolean
}

/** `keys revoke ID --url URL`: POST /v1/keys/:id/revoke, the key's limiter refuses it from then on. */
export async function revokeThroughWorker(fetcher: Fetcher, url: string, id: string, adminKey: string): Promise<KeyRevocation> {
  const { endpoint, answer } = await askWorker(fetcher, url, `/v1/keys/${encodeURIComponent(id)}/revoke`, adminKey, 'POST')
  if (at(answer, 'object') !== 'key.revocation' || at(answer, 'key_id') !== id || typeof at(answer, 'already_revoked') !== 'boolean') {
    throw new Error(`${endpoint} did not answer with a key.revocation object: is ${url} this project's Worker?`)
  }
  return answer as KeyRevocation
}

export interface DashboardLink {
  object: 'dashboard.link'
  url: string
  /** Unix seconds. */
  expires_at: number
}

/** `keys dashboard-link`: POST /v1/dashboard/links, a sign-in link to the dashboard. */
export async function fetchDashboardLink(fetcher: Fetcher, url: string, adminKey: string): Promise<DashboardLink> {
  const { endpoint, answer } = await askWorker(fetcher, url, '/v1/dashboard/links', adminKey, 'POST')
  if (at(answer, 'object') !== 'dashboard.link' || typeof at(answer, 'url') !== 'string' || typeof at(answer, 'expires_at') !== 'number') {
    throw new Error(`${endpoint} did not answer with a dashboard.link object: is ${url} this project's Worker?`)
  }
  return answer as DashboardLink
}

/** One UTC day of a key's history (snake_case, as on the wire). */
export interface UsageHistoryDay {
  date: string
  requests: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface UsageHistory {
  object: 'key.usage_history'
  key_id: string
  /** Every day of the range, oldest first, zeros on days without use. */
  days: UsageHistoryDay[]
}

const DAY_FIELDS = ['requests', 'prompt_tokens', 'completion_tokens', 'total_tokens'] as const

/** `keys usage ID --days N`: GET /v1/keys/:id/usage?days=N. */
export async function fetchUsageHistory(fetcher: Fetcher, url: string, id: string, days: number, adminKey: string): Promise<UsageHistory> {
  const { endpoint, answer } = await askWorker(fetcher, url, `/v1/keys/${encodeURIComponent(id)}/usage?days=${days}`, adminKey)
  const rows = at(answer, 'days')
  const valid =
    at(answer, 'object') === 'key.usage_history' &&
    at(answer, 'key_id') === id &&
    Array.isArray(rows) &&
    rows.every((row) => typeof at(row, 'date') === 'string' && DAY_FIELDS.every((field) => typeof at(row, field) === 'number'))
  if (!valid) {
    throw new Error(
      `${endpoint} did not answer with a key.usage_history object: is ${url} this project's Worker, and recent enough to keep usage history?`,
    )
  }
  return answer as UsageHistory
}

/** The per-day table and a total line. */
export function formatHistory(history: UsageHistory): string {
  const total = (field: (typeof DAY_FIELDS)[number]) => history.days.reduce((sum, day) => sum + day[field], 0)
  const table = columns([
    ['DATE', 'REQUESTS', 'PROMPT', 'COMPLETION', 'TOTAL'],
    ...history.days.map((day) => [day.date, ...DAY_FIELDS.map((field) => String(day[field]))]),
    ['total', ...DAY_FIELDS.map((field) => String(total(field)))],
  ])
  return [`Usage per UTC day over the last ${history.days.length} days (tokens: prompt plus completion):`, table].join('\n')
}

export interface BoardBudget {
  period: string
  limit: number
  used: number
  remaining: number
  used_ratio: number | null
  /** Unix ms. */
  resets_at: number
}

export interface BoardEntry {
  key_id: string
  /** Unix ms: when the key's limiter sent this. */
  reported_at: number
  budgets: BoardBudget[]
  spike: { flagged: boolean; hour_tokens: number; normal_tokens: number }
}

export interface KeyBoardAnswer {
  object: 'key.board'
  closest: BoardEntry[]
  flagged: BoardEntry[]
}

function isBoardEntry(value: unknown): value is BoardEntry {
  const budgets = at(value, 'budgets')
  return (
    typeof at(value, 'key_id') === 'string' &&
    typeof at(value, 'reported_at') === 'number' &&
    typeof at(value, 'spike.flagged') === 'boolean' &&
    typeof at(value, 'spike.hour_tokens') === 'number' &&
    typeof at(value, 'spike.normal_tokens') === 'number' &&
    Array.isArray(budgets) &&
    budgets.every(
      (budget) =>
        typeof at(budget, 'period') === 'string' &&
        ['limit', 'used', 'remaining', 'resets_at'].every((field) => typeof at(budget, field) === 'number'),
    )
  )
}

/** `keys board`: GET /v1/keys/board. */
export async function fetchKeyBoard(fetcher: Fetcher, url: string, adminKey: string): Promise<KeyBoardAnswer> {
  const { endpoint, answer } = await askWorker(fetcher, url, '/v1/keys/board', adminKey)
  const closest = at(answer, 'closest')
  const flagged = at(answer, 'flagged')
  if (
    at(answer, 'object') !== 'key.board' ||
    !Array.isArray(closest) ||
    !Array.isArray(flagged) ||
    !closest.every(isBoardEntry) ||
    !flagged.every(isBoardEntry)
  ) {
    throw new Error(
      `${endpoint} did not answer with a key.board object: is ${url} this project's Worker, and recent enough to keep the board?`,
    )
  }
  return answer as KeyBoardAnswer
}

const percent = (used: number, limit: number) => (limit > 0 ? `${((used / limit) * 100).toFixed(1)}%` : '-')
const instant = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
/** Printed to a terminal: the Worker's strings without control characters. */
const plain = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ')

/** The two lists as tables; `now` for how long ago each key reported. */
export function formatBoard(board: KeyBoardAnswer, now: number): string {
  const ago = (ms: number) => `${Math.max(0, Math.round((now - ms) / 1000))} s ago`
  const closest =
    board.closest.length === 0
      ? 'none'
      : columns([
          ['KEY', 'PERIOD', 'USED', 'LIMIT', 'USED %', 'RESETS (UTC)', 'REPORTED'],
          ...board.closest.flatMap((entry) =>
            entry.budgets.map((budget) => [
              plain(entry.key_id),
              plain(budget.period),
              String(budget.used),
              String(budget.limit),
              percent(budget.used, budget.limit),
              instant(budget.resets_at),
              ago(entry.reported_at),
            ]),
          ),
        ])
  const flagged =
    board.flagged.length === 0
      ? 'none'
      : columns([
          ['KEY', 'LAST HOUR', 'NORMAL', 'TIMES NORMAL', 'REPORTED'],
          ...board.flagged.map((entry) => [
            plain(entry.key_id),
            String(entry.spike.hour_tokens),
            String(entry.spike.normal_tokens),
            entry.spike.normal_tokens > 0 ? `${(entry.spike.hour_tokens / entry.spike.normal_tokens).toFixed(1)}x` : '-',
            ago(entry.reported_at),
          ]),
        ])
  return [
    'Keys nearest their token budgets (keys used in the last hour):',
    closest,
    '',
    "Flagged keys (last hour's tokens far above the key's own normal):",
    flagged,
  ].join('\n')
}

/** The low-level cause fetch wraps in its "fetch failed" TypeError, e.g. ECONNREFUSED. */
function reason(error: unknown): string {
  const cause: unknown = error instanceof Error ? error.cause : undefined
  const code: unknown = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined
  if (typeof code === 'string') return code
  if (cause instanceof Error) return cause.message
  return error instanceof Error ? error.message : String(error)
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body) as unknown
  } catch {
    return undefined
  }
}

/** The message of an OpenAI-shaped error body, {"error": {"message": ...}}. */
function errorMessage(answer: unknown): string | undefined {
  const message = at(answer, 'error.message')
  // Printed to a terminal: no control characters from the network.
  return typeof message === 'string' && message !== '' ? message.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ') : undefined
}

function at(value: unknown, path: string): unknown {
  let node = value
  for (const key of path.split('.')) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[key] : undefined
  return node
}

const NUMBERS = [
  'limits.requests_per_minute',
  'limits.tokens_per_minute',
  'limits.concurrent_streams',
  'usage.in_flight',
  ...['requests', 'tokens'].flatMap((window) => ['limit', 'remaining', 'reset_ms'].map((field) => `usage.${window}.${field}`)),
  'usage.totals.admitted',
  'usage.totals.prompt_tokens',
  'usage.totals.completion_tokens',
  'usage.totals.expired_leases',
]
const NUMBERS_OR_NULL = ['limits.concurrent_streams_per_ip', 'limits.max_output_tokens']
const STRINGS = ['key_id', 'source.requests_per_minute', 'source.tokens_per_minute', 'source.concurrent_streams']

/** Checks every field the table reads, so a wrong URL fails with a message rather than NaNs. */
function isKeyUsage(value: unknown): value is KeyUsage {
  const refused = at(value, 'usage.totals.refused')
  return (
    at(value, 'object') === 'key.limits' &&
    typeof at(value, 'enforced') === 'boolean' &&
    (at(value, 'priority') === undefined || typeof at(value, 'priority') === 'string') &&
    (at(value, 'weight') === undefined || typeof at(value, 'weight') === 'number') &&
    NUMBERS.every((path) => typeof at(value, path) === 'number') &&
    NUMBERS_OR_NULL.every((path) => at(value, path) === null || typeof at(value, path) === 'number') &&
    STRINGS.every((path) => typeof at(value, path) === 'string') &&
    typeof refused === 'object' &&
    refused !== null &&
    Object.values(refused).every((count) => typeof count === 'number')
  )
}
