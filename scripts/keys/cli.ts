// The key CLI's commands. Exit codes: 0 done, 1 failed (unknown id, KV or wrangler error, the
// Worker unreachable or refusing), 2 bad command line (the error on stderr, and where --help is).
import { runCli, type Output } from '../cli-support.ts'
import { basename } from 'node:path'
import { wranglerKv, runWrangler, type KvTarget, type WranglerRunner } from './kv.ts'
import { describeHedging, describeLimits, describePriority, describeRecord, describeWeight, formatList, formatUsage } from './format.ts'
import { parseCommand, USAGE, USAGE_HINT, type Command } from './options.ts'
import { createKey, findKey, listKeys, revokeKey, updateLimits } from './store.ts'
import {
  fetchDashboardLink,
  fetchKeyBoard,
  fetchKeyUsage,
  fetchUsageHistory,
  formatBoard,
  formatHistory,
  revokeThroughWorker,
  type Fetcher,
} from './usage.ts'

export interface CliDeps {
  run: WranglerRunner
  /** For usage, which asks the Worker over HTTP. */
  fetch: Fetcher
  out: Output
  now: () => number
  /** Where usage finds GATEWAY_ADMIN_KEY. */
  env: Readonly<Record<string, string | undefined>>
}

const defaults: CliDeps = { run: runWrangler, fetch: (url, init) => fetch(url, init), out: console, now: Date.now, env: process.env }

export async function runKeysCli(argv: readonly string[], deps: Partial<CliDeps> = {}): Promise<number> {
  const { run, fetch, out, now, env } = { ...defaults, ...deps }
  // One instant for the whole command: an expiry parsed from "30d" and the record's creation time
  // read the clock once, so they are exactly 30 days apart even across a second's boundary.
  const at = now()
  return runCli({
    parse: () => parseCommand(argv, at, env),
    execute: async (command) => {
      if (command.name === 'dashboard-link') {
        const link = await fetchDashboardLink(fetch, command.url, command.adminKey)
        out.log(
          command.json
            ? JSON.stringify(link, null, 2)
            : `${link.url}\n\nValid until ${new Date(link.expires_at * 1000).toISOString()}; opening it signs this browser in for 8 hours.`,
        )
        return 0
      }
      if (command.name === 'revoke' && command.worker) {
        const { url, adminKey } = command.worker
        printRevokedThroughWorker(out, await revokeThroughWorker(fetch, url, command.id, adminKey), url)
        return 0
      }
      // Without --url: through the Worker whenever it can be reached, else KV below (execute).
      if (command.name === 'revoke' && command.gateway && (await revokeThroughFoundWorker(command, fetch, out))) return 0
      if (command.name === 'board') {
        const board = await fetchKeyBoard(fetch, command.url, command.adminKey)
        out.log(command.json ? JSON.stringify(board, null, 2) : formatBoard(board, at))
        return 0
      }
      if (command.name !== 'usage') return execute(command, run, out, at)
      const usage = await fetchKeyUsage(fetch, command.url, command.id, command.adminKey)
      // --days: the key's history too, from its limiter (GET /v1/keys/:id/usage).
      const history =
        command.days === undefined ? null : await fetchUsageHistory(fetch, command.url, command.id, command.days, command.adminKey)
      if (command.json) out.log(JSON.stringify(history === null ? usage : { ...usage, usage_history: history }, null, 2))
      else out.log(history === null ? formatUsage(usage) : `${formatUsage(usage)}\n\n${formatHistory(history)}`)
      return 0
    },
    usage: USAGE,
    usageHint: USAGE_HINT,
    out,
  })
}

async function execute(
  command: Exclude<Command, { name: 'help' | 'usage' | 'board' | 'dashboard-link' }>,
  run: WranglerRunner,
  out: Output,
  now: number,
): Promise<number> {
  const kv = wranglerKv(command.target, run)
  const where = command.target.remote ? 'remote' : 'local'
  switch (command.name) {
    case 'create': {
      const created = await createKey(kv, command.fields, now)
      if (command.json) out.log(JSON.stringify(created, null, 2))
      else {
        out.log(`Created ${created.record.id} in the ${where} KEYS namespace.\n`)
        out.log(`  ${created.secret}\n`)
        out.log('This secret is shown once: store it now. Only its SHA-256 hash is kept, so it cannot be shown again.\n')
        out.log(describeRecord(created.record, now))
      }
      return 0
    }
    case 'list': {
      const records = await listKeys(kv)
      out.log(command.json ? JSON.stringify(records, null, 2) : formatList(records, now))
      return 0
    }
    case 'show': {
      const stored = await findKey(kv, command.id)
      if (!stored) return unknownKey(out, command.id, where)
      out.log(command.json ? JSON.stringify(stored.record, null, 2) : describeRecord(stored.record, now))
      return 0
    }
    case 'revoke': {
      const revoked = await revokeKey(kv, command.id)
      if (!revoked) return unknownKey(out, command.id, where)
      const { id, name } = revoked.record
      out.log(
        revoked.wasDisabled
          ? `${id} (${name}) was already revoked in the ${where} KEYS namespace.`
          : `Revoked ${id} (${name}) in the ${where} KEYS namespace only; its record stays, disabled, for audit.`,
      )
      out.log(`The key stays usable wherever a Worker cached it, ${kvRevocationDelay(command.target.remote)}`)
      out.log(
        'To stop it within seconds, revoke it through the Worker: set GATEWAY_ADMIN_KEY (an admin-scope key) and GATEWAY_URL, or pass --url URL (docs/keys.md, Revocation).',
      )
      return 0
    }
    case 'limits': {
      const record = await updateLimits(kv, command.id, command.limits, command.hedging, command.priority, command.weight)
      if (!record) return unknownKey(out, command.id, where)
      const hedging = command.hedging === undefined ? {} : { hedging: record.hedging ?? 'default' }
      const priority = command.priority === undefined ? {} : { priority: record.priority ?? 'default' }
      const weight = command.weight === undefined ? {} : { weight: record.weight ?? 'default' }
      if (command.json) out.log(JSON.stringify({ id: record.id, limits: record.limits, ...hedging, ...priority, ...weight }, null, 2))
      else {
        const limits = describeLimits(
          record.limits,
          command.hedging === undefined ? null : describeHedging(record),
          command.priority === undefined ? null : describePriority(record),
          command.weight === undefined ? null : describeWeight(record),
        )
        out.log(`Limits of ${record.id} (${record.name}) in the ${where} KEYS namespace:\n${limits}\n`)
        out.log(`Workers pick up the change when their cached copy of the key expires: ${cacheDelay(command.target.remote)}`)
      }
      return 0
    }
  }
}

type RevokeCommand = Extract<Command, { name: 'revoke' }>

/** The Worker's answer to a revocation, as the revoke command prints it. */
function printRevokedThroughWorker(out: Output, revoked: Awaited<ReturnType<typeof revokeThroughWorker>>, through: string): void {
  out.log(
    revoked.already_revoked
      ? `${revoked.key_id} (${revoked.name}) was already revoked.`
      : `Revoked ${revoked.key_id} (${revoked.name}) through ${through}; its record stays, disabled, for audit.`,
  )
  out.log(
    "Every route refuses the key within seconds: each Worker isolate asks the key's limiter at least once a second. Streams already running finish.",
  )
}

/**
 * `revoke ID` without --url: through the Worker (the fast path) when GATEWAY_ADMIN_KEY holds an
 * admin key and the Worker's URL is known (GATEWAY_URL, else the target's PUBLIC_ORIGINS); true
 * when done. Otherwise it says on stderr why not and returns false, and the caller writes KV.
 */
async function revokeThroughFoundWorker(command: RevokeCommand, fetch: Fetcher, out: Output): Promise<boolean> {
  const { id, target, gateway } = command
  if (!gateway) return false
  if (gateway.adminKey === undefined) {
    out.error('Not revoking through the Worker: GATEWAY_ADMIN_KEY (an admin-scope key) is not set.')
    return false
  }
  const found = gateway.url === undefined ? await publicOrigin(target) : { url: gateway.url, from: 'GATEWAY_URL' }
  if (typeof found === 'string') {
    out.error(`Not revoking through the Worker: ${found}`)
    return false
  }
  try {
    printRevokedThroughWorker(out, await revokeThroughWorker(fetch, found.url, id, gateway.adminKey), `${found.url} (from ${found.from})`)
    return true
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error)
    out.error(`Could not revoke ${id} through the Worker at ${found.url} (from ${found.from}): ${why}`)
    return false
  }
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/

/**
 * The Worker serving the target's namespace, from the target's wrangler config: the first of its
 * PUBLIC_ORIGINS (of --env NAME) on loopback for local state (npm start), off loopback with
 * --remote. A string says why there is none.
 */
async function publicOrigin(target: KvTarget): Promise<{ url: string; from: string } | string> {
  const where = `${basename(target.config)}${target.env === undefined ? '' : ` [env.${target.env}]`}`
  let origins: string[]
  try {
    // Loaded only here: wrangler's API takes a moment to load, and only this command reads it.
    const { unstable_readConfig } = await import('wrangler')
    const vars: Record<string, unknown> = unstable_readConfig({ config: target.config, env: target.env }).vars
    origins = typeof vars.PUBLIC_ORIGINS === 'string' ? vars.PUBLIC_ORIGINS.split(',').map((origin) => origin.trim()) : []
  } catch (error) {
    return `GATEWAY_URL is not set and ${where} could not be read (${error instanceof Error ? error.message : String(error)}).`
  }
  for (const origin of origins) {
    if (URL.canParse(origin) && LOOPBACK_HOST.test(new URL(origin).hostname) !== target.remote) {
      return { url: new URL(origin).origin, from: `PUBLIC_ORIGINS in ${where}` }
    }
  }
  const kind = target.remote ? 'public (non-loopback)' : 'loopback'
  return `GATEWAY_URL is not set and PUBLIC_ORIGINS in ${where} names no ${kind} origin.`
}

/** How long a key revoked in KV only may still be used: the isolate cache, and KV's propagation remotely. */
function kvRevocationDelay(remote: boolean): string {
  return remote
    ? 'for up to KEY_CACHE_TTL_MS (60 s by default) plus KV propagation (up to about 60 s): about 2 minutes.'
    : 'for up to KEY_CACHE_TTL_MS (60 s by default).'
}

/** How long a record change takes to reach the Worker; docs/keys.md explains both parts. */
function cacheDelay(remote: boolean): string {
  return 'within KEY_CACHE_TTL_MS (60 s by default).' + (remote ? ' KV itself can take up to about 60 s more to reach every location.' : '')
}

function unknownKey(out: Output, id: string, where: string): number {
  out.error(`No key with id ${id} in the ${where} KEYS namespace.`)
  return 1
}
