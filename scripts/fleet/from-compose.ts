// npm run fleet -- from-compose: the fleet entries of a GPU host's compose file, printed as the add
// commands that register them (or as the fleet record, with --json): https://HOSTNAME for a
// backend behind the file's Cloudflare Tunnel, http://HOST:PORT for one on a published port. It reads the file as Compose
// would and changes nothing, so its output can be read first and then run.
import { relative } from 'node:path'
import { fleetRecordSchema, type BackendRecord, type FleetRecord } from '../../src/fleet/records.ts'
import { UsageError } from '../cli-support.ts'
import { ROOT } from '../processes.ts'
import { ComposeError, fleetServices, readComposeFile, type Env, type FleetService } from './compose.ts'
import { DEFAULT_TUNNEL_URL_TEMPLATE, DEFAULT_URL_TEMPLATE, newBackend, type FromComposeCommand } from './options.ts'
import { isPlaceholderTunnelId, RESERVED_WHY, reservedHosts } from './placeholders.ts'
import { readTunnelConfig } from './tunnel.ts'

export interface ComposeFleet {
  backends: BackendRecord[]
  /** Backends at a loopback address: reachable by wrangler dev on this machine only. */
  loopback: string[]
}

export function composeFleet(command: FromComposeCommand, env: Env): ComposeFleet {
  const file = readComposeFile(command.file, env)
  const services = fleetServices(file, command.profile)
  if (services.length === 0) {
    throw new ComposeError(
      `${command.file} has no service in profile ${command.profile} that publishes port 8000 or that a cloudflared tunnel reaches.`,
    )
  }
  const backends = services.map((service) => {
    const id = `${command.idPrefix}${service.name}`
    const url = backendUrl(command, service, id)
    try {
      const values = { url, 'max-concurrency': String(service.maxNumSeqs), region: command.region, weight: undefined }
      return newBackend(id, { ...values, 'access-secret': command.accessSecret })
    } catch (error) {
      // A value taken from the file, not typed on the command line: exit 1 and name the service.
      if (error instanceof UsageError) throw new ComposeError(`Service ${service.name}: ${error.message}`)
      throw error
    }
  })
  const duplicate = backends.find((backend, i) => backends.findIndex((other) => other.url === backend.url) !== i)
  if (duplicate) throw new ComposeError(`Two services would share the URL ${duplicate.url}; the URL template must tell them apart.`)
  refusePlaceholders(command, services, backends)
  const loopback = backends.filter((backend) => isLoopback(new URL(backend.url).hostname)).map((backend) => backend.id)
  return { backends, loopback }
}

/**
 * The placeholders the repository ships never become fleet entries: a tunnel whose config.yml
 * still has the all-zero id, and URLs under a reserved example or test name, whether they come
 * from config.yml's ingress rules, --url-template or --host. One ComposeError (exit 1) says what
 * to change, and where.
 */
function refusePlaceholders(command: FromComposeCommand, services: readonly FleetService[], backends: readonly BackendRecord[]): void {
  const problems: string[] = []
  const configs = [...new Set(services.flatMap(({ reach }) => (reach.kind === 'tunnel' ? [reach.config] : [])))]
  for (const path of configs) {
    const { tunnel } = readTunnelConfig(path)
    if (isPlaceholderTunnelId(tunnel)) {
      const value = tunnel === undefined || tunnel === null ? 'no tunnel id' : `the placeholder tunnel id ${String(tunnel)}`
      problems.push(
        `${displayPath(path)} has ${value}: put the UUID that \`cloudflared tunnel create NAME\` printed under \`tunnel:\` (docs/deploy.md, section 4).`,
      )
    }
  }
  // What to change depends on where each reserved hostname came from: the template given, the
  // tunnel's ingress rules, or the host.
  const byFix = new Map<string, string[]>()
  for (const [index, backend] of backends.entries()) {
    const hosts = reservedHosts([backend.url])
    if (hosts.length === 0) continue
    const { reach } = services[index] as FleetService
    const hostname = new URL(backend.url).hostname
    const fix =
      command.urlTemplate !== undefined && !/\{(host|hostname)\}/.test(command.urlTemplate)
        ? 'give --url-template your own domain'
        : reach.kind === 'tunnel' && hostname === reach.hostname
          ? `put your own hostnames in the ingress rules of ${displayPath(reach.config)}, one per vLLM service, each routed to the tunnel with \`cloudflared tunnel route dns\` (docs/deploy.md, section 4)`
          : command.host !== undefined
            ? 'give --host the address the Worker reaches this machine at'
            : `pass --host with the address the Worker reaches this machine at`
    const listed = byFix.get(fix) ?? []
    byFix.set(fix, [...listed, ...hosts.filter((host) => !listed.includes(host))])
  }
  for (const [fix, hosts] of byFix) {
    problems.push(`${hosts.join(', ')} ${hosts.length === 1 ? 'is' : 'are'} ${RESERVED_WHY}: ${fix}.`)
  }
  if (problems.length > 0) {
    const lines = problems.map((problem) => `  ${problem}`)
    throw new ComposeError(['Refusing placeholders, so no fleet entry was printed. Change them:', ...lines].join('\n'))
  }
}

/**
 * The URL template filled for one service. {host} and {port} exist for a published port only,
 * {hostname} behind a tunnel only: a template naming the other kind's fields is an error, as is
 * --host for a backend that only the tunnel reaches.
 */
function backendUrl(command: FromComposeCommand, service: FleetService, id: string): string {
  const { reach } = service
  const template = command.urlTemplate ?? (reach.kind === 'tunnel' ? DEFAULT_TUNNEL_URL_TEMPLATE : DEFAULT_URL_TEMPLATE)
  const fill = (text: string) => text.replaceAll('{service}', service.name).replaceAll('{id}', id)
  if (reach.kind === 'tunnel') {
    if (command.host !== undefined || /\{(host|port)\}/.test(template)) {
      throw new ComposeError(
        `Service ${service.name} publishes no port: it is reached through the tunnel at ${reach.hostname} (${displayPath(reach.config)}); drop --host, or use {hostname} in --url-template.`,
      )
    }
    return fill(template.replaceAll('{hostname}', reach.hostname))
  }
  if (template.includes('{hostname}')) throw new ComposeError(`Service ${service.name} is not behind a tunnel: {hostname} has no value.`)
  const host = command.host ?? reach.hostIp
  if (template.includes('{host}') && command.host === undefined && isWildcard(host)) {
    throw new ComposeError(
      `Service ${service.name} is published on every interface (${host}): pass --host with the address the Worker reaches this machine at.`,
    )
  }
  const bracketed = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
  return fill(template.replaceAll('{host}', bracketed).replaceAll('{port}', String(reach.port)))
}

/** The output: add commands (comments start with #, so it can be piped to a shell), or the record. */
export function formatComposeFleet(command: FromComposeCommand, fleet: ComposeFleet, now: number): string {
  if (command.json) {
    const record: FleetRecord = fleetRecordSchema.parse({ version: 1, updated: now, backends: fleet.backends })
    return JSON.stringify(record, null, 2)
  }
  const env = command.env === undefined ? '' : ` of the ${command.env} environment`
  const where = command.remote
    ? `the deployed FLEET namespace${env} (--remote)`
    : `the local FLEET namespace${env} (add --remote${command.env === undefined ? ' --env production' : ''} for the deployed one)`
  const lines = [`# ${fleet.backends.length} backends of ${displayPath(command.file)} (profile ${command.profile}), for ${where}:`]
  if (fleet.loopback.length > 0) {
    lines.push(
      `# ${fleet.loopback.join(', ')}: a loopback address reaches this machine only (wrangler dev here), never a`,
      '# deployed Worker: pass --host or --url-template with the address it reaches them at (docs/deploy.md).',
    )
  }
  for (const backend of fleet.backends) {
    const args = ['add', backend.id, '--url', backend.url, '--max-concurrency', String(backend.maxConcurrency)]
    if (backend.region !== null) args.push('--region', backend.region)
    if (backend.accessSecret !== undefined) args.push('--access-secret', backend.accessSecret)
    if (command.env !== undefined) args.push('--env', command.env)
    if (command.remote) args.push('--remote')
    lines.push(['npm', 'run', 'fleet', '--', ...args].map(shellQuote).join(' '))
  }
  return lines.join('\n')
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === ''
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\./.test(hostname)
}

function displayPath(path: string): string {
  const inside = relative(ROOT, path)
  return inside.startsWith('..') ? path : inside
}

/** A word the shell reads back unchanged. */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`
}
