// The key CLI's commands. Exit codes: 0 done, 1 failed (unknown id, KV or wrangler error, the
// Worker unreachable or refusing), 2 bad command line (the error on stderr, and where --help is).
import { runCli, type Output } from '../cli-support.ts'
import { wranglerKv, runWrangler, type WranglerRunner } from './kv.ts'
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
        const revoked = await revokeThroughWorker(fetch, url, command.id, adminKey)
        out.log(
          revoked.already_revoked
            ? `${revoked.key_id} (${revoked.name}) was already revoked.`
            : `Revoked ${revoked.key_id} (${revoked.name}) through ${url}; its record stays, disabled, for audit.`,
        )
        out.log('Its limiter refuses every new request of the key from now on: it stops within seconds. Streams already running finish.')
        return 0
      }
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
        revoked.wasDisabled ? `${id} (${name}) was already revoked.` : `Revoked ${id} (${name}); its record stays, disabled, for audit.`,
      )
      out.log(`Workers that cached the key keep accepting it until their copy expires: ${cacheDelay(command.target.remote)}`)
      out.log('To stop it within seconds, revoke it through the Worker: revoke ID --url URL (docs/keys.md).')
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

/** How long a record change takes to reach the Worker; docs/keys.md explains both parts. */
function cacheDelay(remote: boolean): string {
  return 'within KEY_CACHE_TTL_MS (60 s by default).' + (remote ? ' KV itself can take up to about 60 s more to reach every location.' : '')
}

function unknownKey(out: Output, id: string, where: string): number {
  out.error(`No key with id ${id} in the ${where} KEYS namespace.`)
  return 1
}
