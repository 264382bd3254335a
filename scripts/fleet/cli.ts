// The fleet CLI's commands, callable in-process: runFleetCli(argv, deps) resolves to the exit code,
// with the output, wrangler, clock and environment given (scripts/fleet.ts is a thin wrapper).
// Exit codes: 0 done, 1 failed (unknown id, duplicate id or URL, a placeholder URL or tunnel id,
// KV or wrangler error, an unusable compose file), 2 bad command line (usage on stderr, nothing
// written).
import { runCli, type Output } from '../cli-support.ts'
import { wranglerKv, runWrangler, type WranglerRunner } from '../keys/kv.ts'
import type { Env } from './compose.ts'
import { backendUrlsOf, describeBackend, fleetListing, formatListing } from './format.ts'
import { composeFleet, formatComposeFleet } from './from-compose.ts'
import { parseCommand, USAGE, type Command } from './options.ts'
import { RESERVED_WHY, reservedHosts } from './placeholders.ts'
import { addBackend, readFleet, removeBackend, setBackendState, type Unknown } from './store.ts'

export interface CliDeps {
  run: WranglerRunner
  out: Output
  /** The `updated` time of a change, and the ages list shows. */
  now: () => number
  /** The environment compose files are interpolated with (from-compose). */
  env: Env
}

const defaults: CliDeps = { run: runWrangler, out: console, now: Date.now, env: process.env }

export async function runFleetCli(argv: readonly string[], deps: Partial<CliDeps> = {}): Promise<number> {
  const { run, out, now, env } = { ...defaults, ...deps }
  return runCli({
    parse: () => parseCommand(argv),
    execute: async (command) => {
      if (command.name !== 'from-compose') return execute(command, run, out, now())
      out.log(formatComposeFleet(command, composeFleet(command, env), now()))
      return 0
    },
    usage: USAGE,
    out,
  })
}

async function execute(
  command: Exclude<Command, { name: 'help' | 'from-compose' }>,
  run: WranglerRunner,
  out: Output,
  now: number,
): Promise<number> {
  const kv = wranglerKv(command.target, run)
  const env = command.target.env === undefined ? '' : ` of the ${command.target.env} environment`
  const where = `${command.target.remote ? 'remote' : 'local'} FLEET namespace${env}`
  const pickUp = () => out.log(pickUpDelay(command.target.remote))
  switch (command.name) {
    case 'list': {
      const listing = fleetListing(await readFleet(kv))
      out.log(command.json ? JSON.stringify(listing, null, 2) : formatListing(listing, where, now, command.target.env))
      return 0
    }
    case 'add': {
      const [reserved] = reservedHosts([command.backend.url])
      if (reserved !== undefined) {
        out.error(
          `Refusing --url ${command.backend.url}: ${reserved} is ${RESERVED_WHY}. Give the backend's own address (behind a tunnel, the hostname the ingress rules of your gpu-backend/tunnel/config.yml route to it); nothing was written.`,
        )
        return 1
      }
      const outcome = await addBackend(kv, command.backend, now)
      if ('duplicate' in outcome) {
        const { id, url } = outcome.existing
        out.error(
          outcome.duplicate === 'id'
            ? `The ${where} already has a backend with id ${id} (${url}); remove it first to replace it.`
            : `The ${where} already has ${url}, as backend ${id}.`,
        )
        return 1
      }
      out.log(`Added to the ${where}: ${describeBackend(outcome.added)}.`)
      // Until now the Worker used BACKEND_URLS: the record did not exist, or listed no backend.
      const { previous } = outcome
      if (previous === null || previous.backends.length === 0) {
        const why = previous === null ? 'There was no fleet record, so this made one' : 'The fleet record listed no backend until now'
        out.log(`${why}: Workers now route to the backends it lists (${outcome.record.backends.length} so far) instead of BACKEND_URLS.`)
      }
      pickUp()
      return 0
    }
    case 'remove': {
      const outcome = await removeBackend(kv, command.id, now)
      if ('unknown' in outcome) return unknownBackend(out, command.id, where, outcome, command.target.env)
      out.log(`Removed ${outcome.removed.id} (${outcome.removed.url}) from the ${where}; ${outcome.record.backends.length} left.`)
      if (outcome.record.backends.length === 0)
        out.log(`The fleet record now lists no backend, so the Worker uses ${backendUrlsOf(command.target.env)} again.`)
      pickUp()
      return 0
    }
    case 'drain':
    case 'undrain': {
      const state = command.name === 'drain' ? 'draining' : 'active'
      const outcome = await setBackendState(kv, command.id, state, now)
      if ('unknown' in outcome) return unknownBackend(out, command.id, where, outcome, command.target.env)
      const { id } = outcome.backend
      if (!outcome.changed) out.log(`${id} was already ${state}; nothing changed.`)
      else if (state === 'draining')
        out.log(`${id} is now draining: it finishes what it has and gets no new requests while another backend can serve.`)
      else out.log(`${id} is now active: it gets new requests again.`)
      pickUp()
      return 0
    }
  }
}

/** How long a change takes to reach the Worker; docs/fleet.md explains both parts. */
function pickUpDelay(remote: boolean): string {
  return (
    'Workers pick up fleet changes within FLEET_CACHE_TTL_MS (10 s by default); no deploy is needed.' +
    (remote ? ' KV itself can take up to about 60 s more to reach every location.' : '')
  )
}

function unknownBackend(out: Output, id: string, where: string, { unknown }: Unknown, env: string | undefined): number {
  const why = unknown === 'record' ? ` It has no fleet record: the Worker uses ${backendUrlsOf(env)}.` : ''
  out.error(`No backend with id ${id} in the ${where}.${why}`)
  return 1
}
