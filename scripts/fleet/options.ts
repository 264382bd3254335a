// The fleet CLI's command line, parsed and checked before anything touches KV: a bad value is a
// UsageError (exit 2) and never a half-written fleet record. Shares the key CLI's KV location
// options.
import { resolve } from 'node:path'
import { ACCESS_SECRET_PATTERN, backendRecordSchema, normalizeBackendUrl, type BackendRecord } from '../../src/fleet/records.ts'
import { noArguments, onlyId, parseCommandLine, UsageError, type OptionValues } from '../cli-support.ts'
import type { KvTarget } from '../keys/kv.ts'
import { environment, KV_OPTION_NAMES, KV_OPTIONS, KV_OPTIONS_USAGE, kvTarget } from '../keys/options.ts'
import { COMPOSE_FILE } from './compose.ts'

/** vLLM's own default for --max-num-seqs. */
export const DEFAULT_MAX_CONCURRENCY = 256

/**
 * Where the FLEET namespace is: the key CLI's location, and the wrangler environment whose
 * FLEET binding it is (--env production: the production deployment's namespace, wrangler.toml's
 * [env.production]); undefined: the top-level binding, the one `npm start` and the tests use.
 */
export type FleetTarget = KvTarget & { env: string | undefined }

export type Command =
  | { name: 'help' }
  | { name: 'list'; target: FleetTarget; json: boolean }
  /** `backend` has passed backendRecordSchema. */
  | { name: 'add'; target: FleetTarget; backend: BackendRecord }
  | { name: 'remove' | 'drain' | 'undrain'; target: FleetTarget; id: string }
  | FromComposeCommand

/** Prints the fleet entries of a compose file's services; reads no KV. */
export interface FromComposeCommand {
  name: 'from-compose'
  /** Absolute path of the compose file. */
  file: string
  profile: string
  /** The address the Worker reaches the host at; undefined: each service's published host_ip. */
  host: string | undefined
  /** The backend URL, with {host}, {port}, {hostname}, {service} and {id} filled in; undefined: by how it is reached. */
  urlTemplate: string | undefined
  idPrefix: string
  region: string | undefined
  /** Every backend's accessSecret: the Access token of the host's tunnel. */
  accessSecret: string | undefined
  json: boolean
  /** The printed add commands get --remote. */
  remote: boolean
  /** The printed add commands get --env NAME. */
  env: string | undefined
}

/** The URL of a backend on a published port, and of one behind a tunnel hostname. */
export const DEFAULT_URL_TEMPLATE = 'http://{host}:{port}'
export const DEFAULT_TUNNEL_URL_TEMPLATE = 'https://{hostname}'

export const USAGE = `Usage: npm run fleet -- <command> [options]

Commands:
  list [--json]  Every backend: url, weight, max concurrency, region, state, and its health as
                 the Worker's cron probe last saw it.
  add ID --url URL [--weight N] [--max-concurrency N] [--region R] [--reasoning-parser P]
         [--access-secret NAME]
                 Add an active backend. URL: its vLLM base URL without /v1. --weight: its
                 relative share of traffic (default 1, at most 1000). --max-concurrency: its
                 vLLM --max-num-seqs (default ${DEFAULT_MAX_CONCURRENCY}). --reasoning-parser: its
                 vLLM --reasoning-parser, deepseek_r1 (default) or none. --access-secret: the
                 Cloudflare Access token of its tunnel, as the Worker secrets
                 ACCESS_CLIENT_ID_NAME and ACCESS_CLIENT_SECRET_NAME (default: the pair
                 ACCESS_CLIENT_ID / ACCESS_CLIENT_SECRET, if set). A name, never the secret.
  remove ID      Take a backend out of the fleet.
  drain ID       Send a backend no new requests while another can serve; it finishes what it has.
  undrain ID     Make a draining backend active again.
  from-compose [--file PATH] [--profile gpu|emulator] [--host HOST] [--url-template T]
               [--id-prefix P] [--region R] [--access-secret NAME] [--remote] [--env NAME] [--json]
                 Print the add commands for the backends of a GPU fleet file (default
                 gpu-backend/compose.yaml, profile gpu): one per service publishing port 8000 or
                 reached through the file's cloudflared tunnel, id P + service name,
                 --max-concurrency its MAX_NUM_SEQS. Behind the tunnel the URL is
                 ${DEFAULT_TUNNEL_URL_TEMPLATE}, from the hostname its ingress rules (config.yml) give
                 the service. HOST: the address the Worker reaches a published port at (default:
                 each service's bind address). T: the URL, from {host}, {port}, {hostname},
                 {service} and {id} (default ${DEFAULT_URL_TEMPLATE} for a published port).
                 --access-secret: every backend's Access token, as for add. --remote and
                 --env go on to the printed commands. --json prints the fleet record instead.
                 Reads no KV and changes nothing. Refuses the placeholders the repository
                 ships: the all-zero tunnel id and example hostnames of config.yml.

Workers pick up every change within FLEET_CACHE_TTL_MS (10 s by default); no deploy is needed.

add refuses a URL under a name reserved for examples and tests (example.com, example.net,
example.org, .example, .invalid, .test): it never reaches a backend.

Options for every command but from-compose:
${KV_OPTIONS_USAGE}`

const OPTIONS = {
  ...KV_OPTIONS,
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  url: { type: 'string' },
  weight: { type: 'string' },
  'max-concurrency': { type: 'string' },
  region: { type: 'string' },
  'reasoning-parser': { type: 'string' },
  'access-secret': { type: 'string' },
  file: { type: 'string' },
  profile: { type: 'string' },
  host: { type: 'string' },
  'url-template': { type: 'string' },
  'id-prefix': { type: 'string' },
} as const

type OptionName = keyof typeof OPTIONS
type Values = OptionValues<typeof OPTIONS>

const FLEET_KV_OPTION_NAMES: OptionName[] = [...KV_OPTION_NAMES, 'env']

const ACCEPTS: Record<Exclude<Command['name'], 'help'>, OptionName[]> = {
  list: [...FLEET_KV_OPTION_NAMES, 'json'],
  add: [...FLEET_KV_OPTION_NAMES, 'url', 'weight', 'max-concurrency', 'region', 'reasoning-parser', 'access-secret'],
  remove: [...FLEET_KV_OPTION_NAMES],
  drain: [...FLEET_KV_OPTION_NAMES],
  undrain: [...FLEET_KV_OPTION_NAMES],
  'from-compose': ['file', 'profile', 'host', 'url-template', 'id-prefix', 'region', 'access-secret', 'remote', 'env', 'json'],
}

export function parseCommand(argv: readonly string[]): Command {
  const line = parseCommandLine(argv, OPTIONS, ACCEPTS)
  if (line.name === 'help') return line
  const { name: command, values, rest } = line
  if (command === 'from-compose') {
    noArguments(rest)
    return fromCompose(values)
  }
  const target: FleetTarget = { ...kvTarget(values), binding: 'FLEET', env: environment(values.env) }
  if (command === 'list') {
    noArguments(rest)
    return { name: command, target, json: values.json === true }
  }
  const id = onlyId(command, rest, 'a backend id (such as gpu-a)')
  return command === 'add' ? { name: command, target, backend: newBackend(id, values) } : { name: command, target, id }
}

function fromCompose(values: Values): FromComposeCommand {
  const urlTemplate = values['url-template']
  if (urlTemplate !== undefined && !/\{(port|hostname|service|id)\}/.test(urlTemplate)) {
    throw new UsageError('--url-template needs {port}, {hostname}, {service} or {id}: every backend of the file needs its own URL.')
  }
  const profile = values.profile ?? 'gpu'
  if (profile === '') throw new UsageError('--profile takes a Compose profile, such as gpu or emulator.')
  const accessSecret = values['access-secret']
  // Checked here: a bad name is the command line's fault (exit 2), not the compose file's.
  if (accessSecret !== undefined && !ACCESS_SECRET_PATTERN.test(accessSecret)) {
    throw new UsageError(`${FIELD_RULES.accessSecret}, got: ${accessSecret}`)
  }
  return {
    name: 'from-compose',
    file: values.file === undefined ? COMPOSE_FILE : resolve(process.env.INIT_CWD ?? process.cwd(), values.file),
    profile,
    host: values.host,
    urlTemplate,
    idPrefix: values['id-prefix'] ?? '',
    region: values.region,
    accessSecret,
    json: values.json === true,
    remote: values.remote === true,
    env: environment(values.env),
  }
}

/** What each field of a backend record takes, said in terms of the flag that sets it. */
const FIELD_RULES: Record<keyof BackendRecord, string> = {
  id: 'ID must be 1 to 63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit',
  url: '--url takes an http(s) base URL without /v1, query or fragment, such as http://10.0.0.5:8000',
  weight: '--weight takes a number above 0 and at most 1000',
  maxConcurrency: '--max-concurrency takes a whole number from 1 to 100000',
  region: '--region takes 1 to 64 printable characters',
  state: 'state must be active or draining',
  reasoningParser: '--reasoning-parser takes deepseek_r1 or none',
  accessSecret:
    '--access-secret takes a NAME of 1 to 32 of A-Z, 0-9 and "_" (the Worker secrets ACCESS_CLIENT_ID_NAME and ACCESS_CLIENT_SECRET_NAME)',
}

/** The backend `add` makes, checked against the fleet record's own schema; from-compose makes its entries with it too. */
export function newBackend(
  id: string,
  values: Pick<Values, 'url' | 'weight' | 'max-concurrency' | 'region'> & Partial<Pick<Values, 'reasoning-parser' | 'access-secret'>>,
): BackendRecord {
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
    maxConcurrency:
      values['max-concurrency'] === undefined ? DEFAULT_MAX_CONCURRENCY : decimal(FIELD_RULES.maxConcurrency, values['max-concurrency']),
    region: region ?? null,
    state: 'active',
    reasoningParser: values['reasoning-parser'],
    accessSecret: values['access-secret'],
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
