// How the fleet reads in a terminal and in list --json: each backend beside its last health.
import type { BackendHealth, BackendRecord } from '../../src/fleet/records.ts'
import { healthOf, type Fleet } from './store.ts'
import { columns } from '../cli-support.ts'

export type HealthStatus = 'healthy' | 'unhealthy' | 'unknown'

export interface ListedBackend extends BackendRecord {
  /** null: the probe has no entry for it (not probed yet, or no snapshot). */
  health: BackendHealth | null
}

/** list --json: the record's fields with each backend's health joined in. */
export interface FleetListing {
  /** false: no fleet record; the Worker uses BACKEND_URLS. */
  record: boolean
  /** Unix ms of the record's last change; null without a record. */
  updated: number | null
  /** Unix ms of the probe's last snapshot; null without one. */
  healthAt: number | null
  backends: ListedBackend[]
}

export function fleetListing(fleet: Fleet): FleetListing {
  const { record, health } = fleet
  return {
    record: record !== null,
    updated: record?.updated ?? null,
    healthAt: health?.at ?? null,
    backends: (record?.backends ?? []).map((backend) => ({ ...backend, health: healthOf(health, backend.id) })),
  }
}

export function healthStatus(health: BackendHealth | null): HealthStatus {
  if (health === null) return 'unknown'
  return health.healthy ? 'healthy' : 'unhealthy'
}

/**
 * What the Worker routes to while no fleet record lists a backend: the BACKEND_URLS of the
 * configuration the namespace belongs to (`env`: wrangler.toml's [env.NAME]).
 */
export function backendUrlsOf(env: string | undefined): string {
  return env === undefined
    ? 'BACKEND_URLS from wrangler.toml'
    : `BACKEND_URLS of wrangler.toml's [env.${env}] (empty in production: requests get 503 no_backend_available)`
}

/** The listing as text; `where` names the namespace, such as "local FLEET namespace"; `env` its wrangler environment. */
export function formatListing(listing: FleetListing, where: string, now = Date.now(), env?: string): string {
  if (!listing.record || listing.updated === null) {
    const add = `npm run fleet -- add ID --url URL${env === undefined ? '' : ` --env ${env}`}`
    return `No fleet record in the ${where}: the Worker uses ${backendUrlsOf(env)}.\n${add} makes one.`
  }
  const { backends, updated, healthAt } = listing
  const draining = backends.filter((backend) => backend.state === 'draining').length
  const summary = `Fleet record in the ${where}, updated ${formatTime(updated)} (${formatAge(now - updated)}): ${plural(backends.length, 'backend')}, ${draining} draining.`
  if (backends.length === 0) return `${summary}\nThe record lists no backend, so the Worker uses ${backendUrlsOf(env)}.`
  const header = ['ID', 'URL', 'WEIGHT', 'MAX CONC', 'REGION', 'STATE', 'ACCESS', 'HEALTH', 'CHECKED', 'RUNNING', 'WAITING']
  const rows = backends.map(({ id, url, weight, maxConcurrency, region, state, accessSecret, health }) =>
    [
      id,
      url,
      String(weight),
      String(maxConcurrency),
      region ?? '-',
      state,
      accessSecret ?? '-',
      healthStatus(health),
      health ? formatAge(now - health.checkedAt) : '-',
      String(health?.running ?? '-'),
      String(health?.waiting ?? '-'),
    ].map(printable),
  )
  const problems = backends
    .filter(({ health }) => health !== null && !health.healthy && health.problem !== null)
    .map(({ id, health }) => `${id}: ${printable(health?.problem ?? '')}`)
  const probe =
    healthAt === null
      ? "Health: no snapshot; the Worker's cron probe writes fleet:health every minute, and it expires after 10 minutes."
      : `Health: the cron probe of ${formatTime(healthAt)} (${formatAge(now - healthAt)}).`
  const problemLines = problems.length > 0 ? ['', 'Problems:', ...problems.map((line) => `  ${line}`)] : []
  return [summary, columns([header, ...rows]), ...problemLines, '', probe].join('\n')
}

/** One backend on one line, for add. */
export function describeBackend(backend: BackendRecord): string {
  const region = backend.region === null ? 'no region' : `region ${backend.region}`
  const access = backend.accessSecret === undefined ? '' : `, Access token ${backend.accessSecret}`
  return `${backend.id}: ${backend.url}, weight ${backend.weight}, max concurrency ${backend.maxConcurrency}, ${printable(region)}, ${backend.state}${access}`
}

function formatTime(unixMs: number): string {
  return new Date(unixMs).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** "12 s ago", "3 min ago", "5 h ago", "2 d ago". */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000))
  if (seconds < 120) return `${seconds} s ago`
  if (seconds < 120 * 60) return `${Math.floor(seconds / 60)} min ago`
  if (seconds < 48 * 3600) return `${Math.floor(seconds / 3600)} h ago`
  return `${Math.floor(seconds / 86_400)} d ago`
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`
}

/** Text from KV never reaches the terminal as control characters (escape sequences, fake lines). */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]/g, '?')
}
