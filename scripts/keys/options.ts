// The key CLI's command line, parsed and checked before anything touches KV or the Worker: a bad
// value is a UsageError (exit 2) and never a half-made key.
import { resolve } from 'node:path'
import {
  isKeyWeight,
  isWellFormedSecret,
  MAX_KEY_WEIGHT,
  PRIORITY_CLASSES,
  type KeyLimits,
  type PriorityClass,
  type Scope,
} from '../../src/auth/key-record.ts'
import { noArguments, onlyId, parseCommandLine, UsageError, type OptionValues } from '../cli-support.ts'
import { ROOT } from '../processes.ts'
import type { KvTarget } from './kv.ts'
import type { KeyFields } from './store.ts'

export type Command =
  | { name: 'help' }
  | { name: 'create'; target: KvTarget; json: boolean; fields: KeyFields }
  | { name: 'list'; target: KvTarget; json: boolean }
  | { name: 'show'; target: KvTarget; json: boolean; id: string }
  /**
   * Through the Worker (POST /v1/keys/:id/revoke), which stops the key in seconds: with `worker`
   * (--url) only that way; without it, first that way when `gateway` (GATEWAY_URL, or else the
   * target's PUBLIC_ORIGINS, with GATEWAY_ADMIN_KEY) can reach it, and otherwise in KV.
   */
  | { name: 'revoke'; target: KvTarget; id: string; worker: { url: string; adminKey: string } | null; gateway?: RevokeGateway }
  /** Only the limits given change; null: back to the deployment default (hedging, priority, weight: the field removed). */
  | {
      name: 'limits'
      target: KvTarget
      json: boolean
      id: string
      limits: Partial<KeyLimits>
      hedging?: boolean | null
      priority?: PriorityClass | null
      weight?: number | null
    }
  /** Asks the Worker, not KV: `url` is its origin, `adminKey` comes from GATEWAY_ADMIN_KEY. */
  | { name: 'usage'; json: boolean; id: string; url: string; adminKey: string; days?: number }
  /** The keys nearest their budgets and the flagged keys, from the Worker (GET /v1/keys/board). */
  | { name: 'board'; json: boolean; url: string; adminKey: string }
  /** Asks the Worker for a dashboard sign-in link, with the admin key from GATEWAY_ADMIN_KEY. */
  | { name: 'dashboard-link'; json: boolean; url: string; adminKey: string }

/** What `revoke` without --url read from the environment to reach the Worker; undefined: not set. */
export interface RevokeGateway {
  /** GATEWAY_URL, checked as --url is. */
  url: string | undefined
  /** GATEWAY_ADMIN_KEY, checked as usage checks it. */
  adminKey: string | undefined
}

/** The options that say where the namespace is (read by kvTarget); the fleet CLI shares them. */
export const KV_OPTIONS = {
  remote: { type: 'boolean' },
  'persist-to': { type: 'string' },
  config: { type: 'string' },
  env: { type: 'string' },
} as const

/** KV_OPTIONS' names, for the commands that read or write KV to accept. */
export const KV_OPTION_NAMES = Object.keys(KV_OPTIONS) as (keyof typeof KV_OPTIONS)[]

/** KV_OPTIONS, as the usage texts list them. */
export const KV_OPTIONS_USAGE = `  --remote            The deployed namespace (needs wrangler login); default: local dev state.
  --persist-to DIR    Local state directory (default: .wrangler/state, as wrangler dev).
  --config PATH       Wrangler config (default: wrangler.toml at the project root).
  --env NAME          The namespace of wrangler.toml's [env.NAME] (wrangler's --env), such as
                      --env production --remote for the production deployment; default: the
                      top-level one, which npm start uses.
`

/** The most days of history the Worker answers (src/routes/key-usage.ts). */
export const MAX_HISTORY_DAYS = 400

export const USAGE = `Usage: npm run keys -- <command> [options]

Commands:
  create --name NAME [--scopes chat,admin] [--expires 30d|12h|2027-01-01T00:00:00Z]
         [--origins https://a.example,...] [--rpm N] [--tpm N] [--streams N] [--max-output N]
         [--budget-day N] [--budget-month N] [--json]
                 Make a key; its secret is printed once and never stored.
  list [--json]  Every key: id, name, scopes, status, expiry.
  show ID [--json]
                 One key's record.
  revoke ID [--url URL]
                 Disable a key; its record stays for audit. Through the Worker when it can,
                 and the key stops on every route within seconds: the Worker at --url, else
                 at GATEWAY_URL, else at wrangler.toml's PUBLIC_ORIGINS (loopback ones for
                 local state, others with --remote; of --env NAME), with an admin-scope key
                 from GATEWAY_ADMIN_KEY, as usage. Without --url, when it cannot reach the
                 Worker it writes KV itself and says so: the key then stays usable for up
                 to KEY_CACHE_TTL_MS plus KV propagation (about 2 minutes with --remote).
  limits ID [--rpm N|default] [--tpm N|default] [--streams N|default] [--max-output N|default] [--json]
                 Change a key's limits; default: back to the deployment default. Workers
                 pick the change up within KEY_CACHE_TTL_MS (60 s by default).
  limits ID [--budget-day N|none|default] [--budget-month N|none|default]
                 The key's token budgets (prompt plus output tokens) per UTC day and per
                 calendar month (UTC); none removes one. A deployment has no default budget,
                 so default is none too (docs/keys.md, Budgets).
  limits ID --hedging on|off|default
                 Hedged first tokens for this key: off never hedges its requests; on and
                 default follow the deployment's HEDGING (docs/fleet.md, Hedging).
  limits ID --priority interactive|standard|batch|default
                 The key's priority class: the order of its requests in a backend's
                 waiting queue (interactive first, batch last); default removes it, and a
                 key without one is standard (docs/keys.md, Priority).
  limits ID --weight N|default
                 The key's share of the fleet's edge queue within its priority class while
                 the fleet is full: weight 2 is served twice as often as weight 1. A number
                 > 0 and <= ${MAX_KEY_WEIGHT}; default removes it, and a key without one has
                 weight 1 (docs/keys.md, Weight). May be given with --priority.
  usage ID --url URL [--json]
                 A key's effective limits and live usage, from the Worker at URL (such as
                 http://127.0.0.1:8787). Reads an admin-scope key from the environment
                 variable GATEWAY_ADMIN_KEY (no flag, to keep it out of ps and shell history).
  usage ID --url URL --days N [--json]
                 The same, and the key's requests and tokens per UTC day over the last N
                 days (1 to ${MAX_HISTORY_DAYS}) with their total, from the key's limiter.
  board --url URL [--json]
                 The keys nearest their token budgets (share used per period, and when it
                 resets) and the keys whose hourly usage is flagged as far above their
                 normal, among the keys used in the last hour. Also reads GATEWAY_ADMIN_KEY.
  dashboard-link --url URL [--json]
                 A sign-in link to the Worker's dashboard (URL/dashboard), valid for 10
                 minutes and one use; opening it starts an 8-hour session. Also reads
                 GATEWAY_ADMIN_KEY.

Options for every command but usage, board, dashboard-link and revoke --url:
${KV_OPTIONS_USAGE}`

/** What a bad command line prints after its error, rather than the whole usage above. */
export const USAGE_HINT = 'Run npm run keys -- --help for the commands and their options.'

const OPTIONS = {
  ...KV_OPTIONS,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  name: { type: 'string' },
  scopes: { type: 'string' },
  expires: { type: 'string' },
  origins: { type: 'string' },
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  streams: { type: 'string' },
  'max-output': { type: 'string' },
  'budget-day': { type: 'string' },
  'budget-month': { type: 'string' },
  hedging: { type: 'string' },
  priority: { type: 'string' },
  weight: { type: 'string' },
  url: { type: 'string' },
  days: { type: 'string' },
} as const

type OptionName = keyof typeof OPTIONS
type Values = OptionValues<typeof OPTIONS>

/** The limit flags and the record fields they set. */
const LIMIT_FLAGS = [
  ['rpm', 'requestsPerMinute'],
  ['tpm', 'tokensPerMinute'],
  ['streams', 'concurrentStreams'],
  ['max-output', 'maxOutputTokens'],
] as const satisfies readonly (readonly [OptionName, keyof KeyLimits])[]
/** The budget flags and the record fields they set: a count, or none (also default: budgets have no deployment default). */
const BUDGET_FLAGS = [
  ['budget-day', 'budgetDay'],
  ['budget-month', 'budgetMonth'],
] as const satisfies readonly (readonly [OptionName, keyof KeyLimits])[]
const LIMIT_OPTIONS: OptionName[] = [...LIMIT_FLAGS, ...BUDGET_FLAGS].map(([flag]) => flag)
/** Which options each command accepts. usage asks the Worker, not KV, so it takes no KV option. */
const ACCEPTS: Record<Exclude<Command['name'], 'help'>, OptionName[]> = {
  create: [...KV_OPTION_NAMES, 'name', 'scopes', 'expires', 'origins', ...LIMIT_OPTIONS, 'json'],
  list: [...KV_OPTION_NAMES, 'json'],
  show: [...KV_OPTION_NAMES, 'json'],
  revoke: [...KV_OPTION_NAMES, 'url'],
  limits: [...KV_OPTION_NAMES, ...LIMIT_OPTIONS, 'hedging', 'priority', 'weight', 'json'],
  usage: ['url', 'days', 'json'],
  board: ['url', 'json'],
  'dashboard-link': ['url', 'json'],
}

/** What the commands that take one key say when it is missing. */
const KEY_ID = 'a key id (key_...)'

/** `env` is read for GATEWAY_ADMIN_KEY, by the commands that ask the Worker. */
export function parseCommand(
  argv: readonly string[],
  now = Date.now(),
  env: Readonly<Record<string, string | undefined>> = process.env,
): Command {
  const line = parseCommandLine(argv, OPTIONS, ACCEPTS)
  if (line.name === 'help') return line
  const { name: command, values, rest } = line
  const json = values.json === true
  if (command === 'usage') {
    const id = onlyId(command, rest, KEY_ID)
    const days = values.days === undefined ? {} : { days: historyDays(values.days) }
    return { name: command, json, id, url: workerUrl(command, values.url), adminKey: adminKey(command, env), ...days }
  }
  if (command === 'board') {
    noArguments(rest)
    return { name: command, json, url: workerUrl(command, values.url), adminKey: adminKey(command, env) }
  }
  if (command === 'dashboard-link') {
    noArguments(rest)
    return { name: command, json, url: workerUrl(command, values.url), adminKey: adminKey(command, env) }
  }
  if (command === 'revoke' && values.url !== undefined) {
    if (KV_OPTION_NAMES.some((name) => values[name] !== undefined))
      throw new UsageError('revoke --url goes through the Worker, which uses its own KV: drop --remote, --persist-to, --config and --env.')
    const worker = { url: workerUrl(command, values.url), adminKey: adminKey(command, env) }
    return { name: command, target: kvTarget(values), id: onlyId(command, rest, KEY_ID), worker }
  }
  const target = kvTarget(values)
  if (command === 'create' || command === 'list') {
    noArguments(rest)
    return command === 'create' ? { name: command, target, json, fields: keyFields(values, now) } : { name: command, target, json }
  }
  const id = onlyId(command, rest, KEY_ID)
  if (command === 'limits') {
    const hedging = hedgingChange(values.hedging)
    const priority = priorityChange(values.priority)
    const weight = weightChange(values.weight)
    return {
      name: command,
      target,
      json,
      id,
      limits: limitChanges(values, hedging !== undefined || priority !== undefined || weight !== undefined),
      ...(hedging === undefined ? {} : { hedging }),
      ...(priority === undefined ? {} : { priority }),
      ...(weight === undefined ? {} : { weight }),
    }
  }
  if (command === 'show') return { name: command, target, json, id }
  return { name: command, target, id, worker: null, gateway: revokeGateway(env) }
}

/** Relative paths mean what they meant where the user typed them; npm run moves to the project root. */
function userPath(path: string): string {
  return resolve(process.env.INIT_CWD ?? process.cwd(), path)
}

/** The location options every KV command takes; the fleet CLI shares them. */
export function kvTarget(values: OptionValues<typeof KV_OPTIONS>): KvTarget {
  const remote = values.remote === true
  if (remote && values['persist-to'] !== undefined) throw new UsageError('--persist-to is for local state; it cannot go with --remote.')
  return {
    remote,
    persistTo: values['persist-to'] === undefined ? undefined : userPath(values['persist-to']),
    config: values.config === undefined ? resolve(ROOT, 'wrangler.toml') : userPath(values.config),
    env: environment(values.env),
  }
}

/** --env NAME: a wrangler environment name, as wrangler.toml's [env.NAME] spells it. */
export function environment(name: string | undefined): string | undefined {
  if (name === undefined) return undefined
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new UsageError(
      `--env takes the name of an environment of wrangler.toml ([env.NAME]), such as production, got: ${JSON.stringify(name)}`,
    )
  }
  return name
}

function keyFields(values: Values, now: number): KeyFields {
  if (values.name === undefined) throw new UsageError('create needs --name.')
  const limits: KeyLimits = { requestsPerMinute: null, tokensPerMinute: null, concurrentStreams: null, maxOutputTokens: null }
  for (const [flag, field] of LIMIT_FLAGS) {
    const value = values[flag]
    if (value !== undefined) limits[field] = count(`--${flag}`, value)
  }
  // A budget is written only when given: a record without one has none.
  for (const [flag, field] of BUDGET_FLAGS) {
    const value = values[flag]
    if (value !== undefined) limits[field] = budget(flag, value)
  }
  return {
    name: parseName(values.name),
    scopes: values.scopes === undefined ? ['chat'] : parseScopes(values.scopes),
    expires: values.expires === undefined ? null : parseExpiry(values.expires, now),
    origins: values.origins === undefined ? [] : parseOrigins(values.origins),
    limits,
  }
}

function parseName(name: string): string {
  const trimmed = name.trim()
  // Control characters would break list's one-line-a-key output and could forge terminal text.
  if (trimmed === '' || trimmed.length > 100 || /[\u0000-\u001f\u007f]/.test(trimmed)) {
    throw new UsageError('--name must be 1 to 100 printable characters.')
  }
  return trimmed
}

function commaList(value: string): string[] {
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
}

function parseScopes(value: string): Scope[] {
  const scopes = commaList(value)
  const known: readonly string[] = ['chat', 'admin'] satisfies Scope[]
  const unknown = scopes.filter((scope) => !known.includes(scope))
  if (scopes.length === 0 || unknown.length > 0) throw new UsageError(`--scopes takes chat and/or admin, got: ${value}`)
  return [...new Set(scopes)] as Scope[]
}

/** Exact origins as browsers send them: scheme, host and port only. */
function parseOrigins(value: string): string[] {
  const origins = commaList(value)
  for (const origin of origins) {
    if (!URL.canParse(origin) || new URL(origin).origin !== origin || !/^https?:/.test(origin)) {
      throw new UsageError(`--origins takes origins such as https://app.example.com (no path or trailing slash), got: ${origin}`)
    }
  }
  return [...new Set(origins)]
}

function count(flag: string, value: string, orDefault = ''): number {
  const number = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < 1) {
    throw new UsageError(`${flag} takes a positive whole number${orDefault}, got: ${value}`)
  }
  return number
}

/** A budget flag: a positive whole number of tokens, or null for none (or default, which is none). */
function budget(flag: string, value: string): number | null {
  return value === 'none' || value === 'default' ? null : count(`--${flag}`, value, ' of tokens, none or default')
}

/** The limits a `limits` command sets: a count, or null for `default` (a budget: for `none` or `default`). */
function limitChanges(values: Values, switchesToo: boolean): Partial<KeyLimits> {
  const changes: Partial<KeyLimits> = {}
  for (const [flag, field] of LIMIT_FLAGS) {
    const value = values[flag]
    if (value !== undefined) changes[field] = value === 'default' ? null : count(`--${flag}`, value, ' or default')
  }
  for (const [flag, field] of BUDGET_FLAGS) {
    const value = values[flag]
    if (value !== undefined) changes[field] = budget(flag, value)
  }
  if (Object.keys(changes).length === 0 && !switchesToo) {
    throw new UsageError(
      'limits needs at least one of --rpm, --tpm, --streams, --max-output (a positive whole number, or default), --budget-day, --budget-month (a positive whole number, none or default), --hedging, --priority or --weight.',
    )
  }
  return changes
}

/** --hedging: off is false, on true, default null (the field is removed); undefined when not given. */
function hedgingChange(value: string | undefined): boolean | null | undefined {
  if (value === undefined) return undefined
  if (value === 'default') return null
  if (value === 'on' || value === 'off') return value === 'on'
  throw new UsageError(`--hedging takes on, off or default, got: ${value}`)
}

/** --priority: a class, or null for default (the field is removed); undefined when not given. */
function priorityChange(value: string | undefined): PriorityClass | null | undefined {
  if (value === undefined) return undefined
  if (value === 'default') return null
  const known: readonly string[] = PRIORITY_CLASSES
  if (known.includes(value)) return value as PriorityClass
  throw new UsageError(`--priority takes ${PRIORITY_CLASSES.join(', ')} or default, got: ${value}`)
}

/** --weight: a number > 0 and <= MAX_KEY_WEIGHT, or null for default (the field is removed); undefined when not given. */
function weightChange(value: string | undefined): number | null | undefined {
  if (value === undefined) return undefined
  if (value === 'default') return null
  // Plain decimals only: Number() would also take '', '0x10' and '1e3'.
  const weight = /^(\d+(\.\d*)?|\.\d+)$/.test(value) ? Number(value) : Number.NaN
  if (isKeyWeight(weight)) return weight
  throw new UsageError(`--weight takes a number greater than 0 and at most ${MAX_KEY_WEIGHT}, or default, got: ${value}`)
}

/** usage --days: a whole number of days, 1 to MAX_HISTORY_DAYS. */
function historyDays(value: string): number {
  const days = /^\d{1,3}$/.test(value) ? Number(value) : Number.NaN
  if (!(days >= 1 && days <= MAX_HISTORY_DAYS))
    throw new UsageError(`--days takes a whole number from 1 to ${MAX_HISTORY_DAYS}, got: ${value}`)
  return days
}

/** The Worker's origin (and any path prefix), without a trailing slash. */
function workerUrl(command: string, value: string | undefined, from = '--url'): string {
  if (value === undefined) throw new UsageError(`${command} needs --url, the Worker to ask (npm start serves it at http://127.0.0.1:8787).`)
  if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol))
    throw new UsageError(`${from} takes an http(s) URL, got: ${value}`)
  const url = new URL(value)
  if (url.search !== '' || url.hash !== '')
    throw new UsageError(`${from} takes the Worker's address without query or fragment, got: ${value}`)
  return url.href.replace(/\/+$/, '')
}

/** revoke without --url: GATEWAY_URL and GATEWAY_ADMIN_KEY if set, each checked; neither is required. */
function revokeGateway(env: Readonly<Record<string, string | undefined>>): RevokeGateway {
  const url = env.GATEWAY_URL?.trim() ? workerUrl('revoke', env.GATEWAY_URL.trim(), 'GATEWAY_URL') : undefined
  return { url, adminKey: env.GATEWAY_ADMIN_KEY?.trim() ? adminKey('revoke', env) : undefined }
}

/** Only from the environment: a flag would show in ps and in shell history. Never echoed. */
function adminKey(command: string, env: Readonly<Record<string, string | undefined>>): string {
  const key = env.GATEWAY_ADMIN_KEY?.trim() ?? ''
  if (key === '')
    throw new UsageError(`${command} needs an API key with the admin scope in the environment variable GATEWAY_ADMIN_KEY (it is not set).`)
  if (!isWellFormedSecret(key)) throw new UsageError('GATEWAY_ADMIN_KEY does not hold an API key (sk- and 43 more characters).')
  return key
}

const DURATION = /^(\d+)([dh])$/
/** A date, or a date and time with an explicit zone: a zoneless time would depend on this machine. */
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2}))?$/

/** `30d`, `12h` from now, or an ISO 8601 instant; in Unix seconds, and in the future. */
export function parseExpiry(value: string, now = Date.now()): number {
  const expires = Math.floor(expiryMillis(value, now) / 1000)
  if (expires * 1000 <= now) throw new UsageError(`--expires must be in the future, got: ${value}`)
  return expires
}

function expiryMillis(value: string, now: number): number {
  const duration = DURATION.exec(value)
  const time = ISO_TIME.exec(value)
  let millis = Number.NaN
  if (duration) millis = now + Number(duration[1]) * (duration[2] === 'd' ? 86_400_000 : 3_600_000)
  else if (time && isRealDate(Number(time[1]), Number(time[2]), Number(time[3]))) millis = Date.parse(value)
  // new Date() also rejects instants past the year 275760 that a huge duration would give.
  if (Number.isNaN(new Date(millis).getTime())) {
    throw new UsageError(`--expires takes a duration such as 30d or 12h, or a time such as 2027-01-01T00:00:00Z, got: ${value}`)
  }
  return millis
}

/** Date.parse rolls 2027-02-30 over into March instead of rejecting it. */
function isRealDate(year: number, month: number, day: number): boolean {
  const date = new Date(Date.UTC(year, month - 1, day))
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day
}
