// Reading the GPU fleet file (gpu-backend/compose.yaml) the way Docker Compose does, for the parts
// this project needs: which services form the fleet, on which host address and port each one is
// published or at which tunnel hostname it is reached (tunnel.ts), and with what --max-num-seqs; and the emulator services' flags for `npm start`.
// Values go through Compose's variable interpolation with the shell's environment over the
// compose file's .env, as `docker compose` would see them.
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parse } from 'yaml'
import { ROOT } from '../processes.ts'
import { tunnelConfigs, tunnelHostnames } from './tunnel.ts'

export const COMPOSE_FILE = join(ROOT, 'gpu-backend/compose.yaml')

/** The port vLLM (and the emulator, in the fleet file) listens on inside its container. */
export const CONTAINER_PORT = 8000

/** The entrypoint's default for MAX_NUM_SEQS (gpu-backend/entrypoint.sh), also vLLM's own. */
export const DEFAULT_MAX_NUM_SEQS = 256

const EMULATOR_SCRIPT = 'gpu-backend/emulator/main.ts'

/** A compose file that this reader cannot use: exit 1, with the reason. */
export class ComposeError extends Error {}

export type Env = Readonly<Record<string, string | undefined>>

interface Service {
  profiles?: unknown
  image?: unknown
  volumes?: unknown
  environment?: unknown
  command?: unknown
  ports?: unknown
}

export interface ComposeFile {
  path: string
  services: Record<string, Service>
  /** The interpolation environment: the shell's variables over the file's .env. */
  env: Env
}

/** Parses the file (YAML merge keys included, as Compose allows) and loads its .env. */
export function readComposeFile(path: string, shellEnv: Env = process.env): ComposeFile {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    throw new ComposeError(`Cannot read the compose file ${path}.`)
  }
  let document: unknown
  try {
    document = parse(text, { merge: true })
  } catch (error) {
    throw new ComposeError(`${path} is not valid YAML: ${error instanceof Error ? error.message : String(error)}`)
  }
  const services = (document as { services?: unknown } | null)?.services
  if (typeof services !== 'object' || services === null) throw new ComposeError(`${path} has no services.`)
  return { path, services: services as Record<string, Service>, env: { ...dotEnv(join(dirname(path), '.env')), ...shellEnv } }
}

/** KEY=VALUE lines of a .env file (Compose's own defaults file); comments and blanks skipped. */
function dotEnv(path: string): Record<string, string> {
  if (!existsSync(path)) return {}
  const values: Record<string, string> = {}
  for (const line of readFileSync(path, 'utf8').split(/\r?\n/)) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line)
    if (!match?.[1] || line.trimStart().startsWith('#')) continue
    values[match[1]] = (match[2] ?? '').replace(/^(['"])(.*)\1$/, '$2')
  }
  return values
}

/**
 * Compose's interpolation: $$ is a literal $, ${VAR} and $VAR the variable (empty when unset),
 * ${VAR:-default} / ${VAR-default} a default when unset or empty / unset, ${VAR:?message} /
 * ${VAR?message} an error.
 */
export function interpolate(value: string, env: Env): string {
  return value.replace(
    /\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (whole, dollar: string, braced?: string, colon?: string, operator?: string, argument?: string, bare?: string) => {
      if (dollar === '$') return '$'
      const name = braced ?? bare ?? ''
      const current = env[name]
      const missing = current === undefined || (colon === ':' && current === '')
      if (operator === '-') return missing ? (argument ?? '') : (current ?? '')
      if (operator === '?' && missing) throw new ComposeError(`${name}: ${argument || 'required variable is not set'}`)
      return current ?? ''
    },
  )
}

function inProfile(service: Service, profile: string): boolean {
  // A service without profiles always starts, whatever profile is chosen.
  return !Array.isArray(service.profiles) || service.profiles.includes(profile)
}

/** The service's environment as Compose passes it: a value-less entry comes from the shell, or is absent. */
export function serviceEnvironment(file: ComposeFile, service: Service): Record<string, string> {
  const entries: [string, unknown][] = Array.isArray(service.environment)
    ? service.environment.map((item) => {
        const text = String(item)
        const equals = text.indexOf('=')
        return equals === -1 ? [text, null] : [text.slice(0, equals), text.slice(equals + 1)]
      })
    : Object.entries((service.environment ?? {}) as Record<string, unknown>)
  const environment: Record<string, string> = {}
  for (const [name, value] of entries) {
    if (value === null || value === undefined) {
      const inherited = file.env[name]
      if (inherited !== undefined) environment[name] = inherited
    } else {
      environment[name] = interpolate(String(value), file.env)
    }
  }
  return environment
}

/** The service's command as an argument list (a string is split on whitespace). */
export function serviceCommand(file: ComposeFile, service: Service): string[] {
  const command = service.command
  if (command === undefined || command === null) return []
  const parts = Array.isArray(command) ? command.map(String) : String(command).trim().split(/\s+/)
  return parts.map((part) => interpolate(part, file.env))
}

export interface PublishedPort {
  hostIp: string
  port: number
}

/** Where the host publishes the service's CONTAINER_PORT, in the long or the short syntax; null when it does not. */
export function publishedPort(file: ComposeFile, name: string, service: Service): PublishedPort | null {
  for (const entry of Array.isArray(service.ports) ? service.ports : []) {
    const { hostIp, published, target } =
      typeof entry === 'object' && entry !== null
        ? longPort(file, entry as LongPort)
        : shortPort(name, interpolate(String(entry), file.env))
    if (Number(target) !== CONTAINER_PORT) continue
    if (!/^\d+$/.test(published))
      throw new ComposeError(`Service ${name}: port ${CONTAINER_PORT} needs one fixed published port, got "${published}".`)
    return { hostIp: hostIp || '0.0.0.0', port: Number(published) }
  }
  return null
}

interface LongPort {
  target?: unknown
  published?: unknown
  host_ip?: unknown
}

function longPort(file: ComposeFile, entry: LongPort): { hostIp: string; published: string; target: string } {
  const text = (value: unknown) => interpolate(String(value ?? ''), file.env)
  return { hostIp: text(entry.host_ip), published: text(entry.published), target: text(entry.target) }
}

/** The short port syntax: [HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL], HOST_IP possibly an [IPv6] address. */
function shortPort(name: string, text: string): { hostIp: string; published: string; target: string } {
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(text)
  const parts = (bracketed ? (bracketed[2] ?? '') : text).replace(/\/\w+$/, '').split(':')
  const [first = '', second = '', third = ''] = parts
  if (parts.length === 1) return { hostIp: bracketed?.[1] ?? '', published: '', target: first }
  if (parts.length === 2) return { hostIp: bracketed?.[1] ?? '', published: first, target: second }
  if (parts.length === 3 && !bracketed) return { hostIp: first, published: second, target: third }
  throw new ComposeError(`Service ${name}: cannot read the port ${text}.`)
}

/** The value after `flag` in an argument list, or undefined. */
export function flagValue(args: readonly string[], flag: string): string | undefined {
  const index = args.indexOf(flag)
  return index === -1 ? undefined : args[index + 1]
}

/** How the Worker reaches a backend: a port the host publishes, or a tunnel hostname. */
export type FleetReach = ({ kind: 'published' } & PublishedPort) | { kind: 'tunnel'; hostname: string; config: string }

export interface FleetService {
  name: string
  reach: FleetReach
  /** What the backend runs with: MAX_NUM_SEQS for the vLLM entrypoint, --max-num-seqs for the emulator. */
  maxNumSeqs: number
}

/**
 * The services of `profile` that publish the backend port or that a cloudflared service of the
 * profile routes a hostname to (tunnel.ts), in file order: the fleet of this host. A service
 * with both is refused: its published port would bypass the tunnel's allow-list.
 */
export function fleetServices(file: ComposeFile, profile: string): FleetService[] {
  const members = Object.entries(file.services).filter(([, service]) => inProfile(service, profile))
  const configs = tunnelConfigs(file, (service) => inProfile(service as Service, profile))
  const hostnames = tunnelHostnames(configs, new Set(members.map(([name]) => name)))
  const fleet: FleetService[] = []
  for (const [name, service] of members) {
    const published = publishedPort(file, name, service)
    const hostname = hostnames.get(name)
    if (published && hostname !== undefined)
      throw new ComposeError(
        `Service ${name} is reached through the tunnel (${hostname}) but also publishes port ${CONTAINER_PORT}, which bypasses the tunnel's allow-list.`,
      )
    const config = configs.find((candidate) => candidate.ingress.some((rule) => rule.hostname === hostname))?.path ?? ''
    const reach: FleetReach | null = published
      ? { kind: 'published', ...published }
      : hostname === undefined
        ? null
        : { kind: 'tunnel', hostname, config }
    if (!reach) continue
    const configured = serviceEnvironment(file, service).MAX_NUM_SEQS ?? flagValue(serviceCommand(file, service), '--max-num-seqs')
    const maxNumSeqs = configured === undefined || configured === '' ? DEFAULT_MAX_NUM_SEQS : Number(configured)
    if (!Number.isInteger(maxNumSeqs) || maxNumSeqs < 1)
      throw new ComposeError(`Service ${name}: max-num-seqs must be a whole number above 0, got "${configured}".`)
    fleet.push({ name, reach, maxNumSeqs })
  }
  return fleet
}

export interface EmulatorService {
  name: string
  /** The published (host) port. */
  port: number
  /** Its flags for gpu-backend/emulator/main.ts, without --host and --port (the caller picks both). */
  args: string[]
}

/** The services of profile `emulator` that run the emulator script, for `npm start`. */
export function emulatorServices(file: ComposeFile): EmulatorService[] {
  const emulators: EmulatorService[] = []
  for (const [name, service] of Object.entries(file.services)) {
    if (!Array.isArray(service.profiles) || !service.profiles.includes('emulator')) continue
    const command = serviceCommand(file, service)
    const script = command.indexOf(EMULATOR_SCRIPT)
    const published = publishedPort(file, name, service)
    if (script === -1 || !published) continue
    const args: string[] = []
    const flags = command.slice(script + 1)
    for (let i = 0; i < flags.length; i++) {
      const flag = flags[i] ?? ''
      if (flag === '--host' || flag === '--port') i++
      else args.push(flag)
    }
    emulators.push({ name, port: published.port, args })
  }
  if (emulators.length === 0) throw new ComposeError(`${file.path} has no emulator service (profile emulator, running ${EMULATOR_SCRIPT}).`)
  return emulators
}
