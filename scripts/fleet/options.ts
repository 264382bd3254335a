// The fleet CLI's command line, parsed and checked before anything touches KV: a bad value is a
// UsageError (exit 2) and never a half-written fleet record. Shares the key CLI's KV location
// options and its UsageError.
import { parseArgs } from 'node:util'
import { backendRecordSchema, normalizeBackendUrl, type BackendRecord } from '../../src/fleet/records.ts'
import type { KvTarget } from '../keys/kv.ts'
import { kvTarget, UsageError } from '../keys/options.ts'

export { UsageError }

/** vLLM's own default for --max-num-seqs. */
export const DEFAULT_MAX_CONCURRENCY = 256

export type Command =
  | { name: 'help' }
  | { name: 'list'; target: KvTarget; json: boolean }
  /** `backend` has passed backendRecordSchema. */
  | { name: 'add'; target: KvTarget; backend: BackendRecord }
  | { name: 'remove' | 'drain' | 'undrain'; target: KvTarget; id: string }

export const USAGE = `Usage: npm run fleet -- <command> [options]

Commands:
  list [--json]  Every backend: url, weight, max concurrency, region, state, and its health as
                 the Worker's cron probe last saw it.
  add ID --url URL [--weight N] [--max-concurrency N] [--region R]
                 Add an active backend. URL: its vLLM base URL without /v1. --weight: its
                 relative share of traffic (default 1, at most 1000). --max-concurrency: its
                 vLLM --max-num-seqs (default ${DEFAULT_MAX_CONCURRENCY}).
  remove ID      Take a backend out of the fleet.
  drain ID       Send a backend no new requests while another can serve; it finishes what it has.
  undrain ID     Make a draining backend active again.

Workers pick up every change within FLEET_CACHE_TTL_MS (10 s by default); no deploy is needed.

Options for every command:
  --remote            The deployed namespace (needs wrangler login); default: local dev state.
  --persist-to DIR    Local state directory (default: .wrangler/state, as wrangler dev).
  --config PATH       Wrangler config (default: wrangler.toml at the project root).
`

const OPTIONS = {
  remote: { type: 'boolean' },
  'persist-to': { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  url: { type: 'string' },
  weight: { type: 'string' },
  'max-concurrency': { type: 'string' },
  region: { type: 'string' },
} as const

type OptionName = keyof typeof OPTIONS
type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values']

const COMMON: OptionName[] = ['remote', 'persist-to', 'config']
const ACCEPTS: Record<Exclude<Command['name'], 'help'>, OptionName[]> = {
  list: [...COMMON, 'json'],
  add: [...COMMON, 'url', 'weight', 'max-concurrency', 'region'],
  remove: [...COMMON],
  drain: [...COMMON],
  undrain: [...COMMON],
}

export function parseCommand(argv: readonly string[]): Command {
  const { values, positionals } = parseStrict(argv)
  if (values.help) return { name: 'help' }
  const [name, ...rest] = positionals
  if (name === undefined) throw new UsageError('Missing command.')
  if (!Object.hasOwn(ACCEPTS, name)) throw new UsageError(`Unknown command: ${name}`)
  const command = name as keyof typeof ACCEPTS
  rejectForeignOptions(command, values)
  const target: KvTarget = { ...kvTarget(values), binding: 'FLEET' }
  if (command === 'list') {
    if (rest.length > 0) throw new UsageError(`Unexpected argument: ${rest[0]}`)
    return { name: command, target, json: values.json === true }
  }
  const id = onlyId(command, rest)
  return command === 'add' ? { name: command, target, backend: newBackend(id, values) } : { name: command, target, id }
}

function parseStrict(argv: readonly string[]): { values: Values; positionals: string[] } {
  try {
    return parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true })
  } catch (error) {
    // parseArgs throws TypeErrors with a readable message for unknown options and missing values.
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
}

function rejectForeignOptions(command: keyof typeof ACCEPTS, values: Values): void {
  const allowed = new Set<string>([...ACCEPTS[command], 'help'])
  const foreign = Object.keys(values).filter((option) => !allowed.has(option))
  if (foreign.length > 0) throw new UsageError(`${command} does not take --${foreign.join(', --')}`)
}

function onlyId(command: string, rest: string[]): string {
  const [id, extra] = rest
  if (id === undefined) throw new UsageError(`${command} needs a backend id (such as gpu-a).`)
  if (extra !== undefined) throw new UsageError(`Unexpected argument: ${extra}`)
  return id
}

/** What each field of a backend record takes, said in terms of the flag that sets it. */
const FIELD_RULES: Record<keyof BackendRecord, string> = {
  id: 'ID must be 1 to 63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit',
  url: '--url takes an http(s) base URL without /v1, query or fragment, such as http://10.0.0.5:8000',
  weight: '--weight takes a number above 0 and at most 1000',
  maxConcurrency: '--max-concurrency takes a whole number from 1 to 100000',
  region: '--region takes 1 to 64 printable characters',
  state: 'state must be active or draining',
}

/** The backend `add` makes, checked against the fleet record's own schema. */
function newBackend(id: string, values: Values): BackendRecord {
  if (values.url === undefined) throw new UsageError(`add needs --url, the backend's vLLM base URL (such as http://10.0.0.5:8000).`)
  const url = normalizeBackendUrl(values.url.trim())
  // The Worker appends /v1/...: a URL ending in /v1 would send requests to /v1/v1/...
  if (!URL.canParse(url) || /\/v1$/.test(url)) throw new UsageError(`${FIELD_RULES.url}, got: ${values.url}`)
  const region = values.region?.trim()
  // Control characters would break list's one-line-a-backend output and could forge terminal text.
  if (region === '' || (region !== undefined && /[\u0000-\u001f\u007f]/.test(region))) {
    throw new UsageError(`${FIELD_RULES.region}, got: ${JSON.stringify(values.region)}`)
  }
  const candidate = {
    id,
    url,
    weight: values.weight === undefined ? 1 : decimal(FIELD_RULES.weight, values.weight),
    maxConcurrency: values['max-concurrency'] === undefined ? DEFAULT_MAX_CONCURRENCY : decimal(FIELD_RULES.maxConcurrency, values['max-concurrency']),
    region: region ?? null,
    state: 'active',
  } satisfies Record<keyof BackendRecord, unknown>
  const result = backendRecordSchema.safeParse(candidate)
  if (result.success) return result.data
  const problems = result.error.issues.map((issue) => {
    const field = issue.path[0] as keyof BackendRecord
    return `${FIELD_RULES[field] ?? `${String(field)}: ${issue.message}`}, got: ${String(candidate[field])}`
  })
  throw new UsageError([...new Set(problems)].join('\n'))
}

/** A plain decimal number: no sign, exponent, hex or empty string, which Number() would all take. */
function decimal(rule: string, value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value)) throw new UsageError(`${rule}, got: ${value}`)
  return Number(value)
}
