// wrangler's `kv` commands, as scripts/keys/kv.ts calls them, answered in-process from the test's
// Miniflare namespace (the same --persist-to directory) with what wrangler prints for local state.
// Each real call is a wrangler process that starts workerd (about a second); the CLI tests run
// most commands on this stand-in and a few as real processes through wrangler itself, which also
// checks that this stand-in prints what wrangler does.
import { readFile } from 'node:fs/promises'
import type { WranglerRunner } from '../../scripts/keys/kv.ts'
import type { LocalKv } from './cli-support.ts'

/**
 * A runner for `kv bulk put FILE`, `kv bulk get FILE` and `kv key list --prefix P` on `binding`
 * in `local`. Anything else, --remote, or another --persist-to fails as wrangler would (the CLI
 * exits 1), so a command that lost its location options fails its test.
 */
export function kvStandIn(local: LocalKv, binding = 'KEYS'): WranglerRunner {
  return async (args) => {
    const flag = (name: string): string | undefined => {
      const at = args.indexOf(name)
      return at === -1 ? undefined : args[at + 1]
    }
    if (args.includes('--remote') || !args.includes('--local')) throw new Error(`the KV stand-in is local only: ${args.join(' ')}`)
    if (flag('--persist-to') !== local.dir) throw new Error(`wrangler ${args.join(' ')}: not the test's --persist-to ${local.dir}`)
    if (flag('--binding') !== binding) throw new Error(`wrangler ${args.join(' ')}: not the binding ${binding}`)
    if (flag('--config') === undefined) throw new Error(`wrangler ${args.join(' ')}: no --config`)
    const [kv, group, operation, operand] = args
    if (kv !== 'kv') throw new Error(`the KV stand-in runs kv commands only: ${args.join(' ')}`)
    if (group === 'bulk' && operation === 'put' && operand !== undefined) {
      const entries = JSON.parse(await readFile(operand, 'utf8')) as { key: string; value: string }[]
      for (const { key, value } of entries) await local.kv.put(key, value)
      return 'Success!\n'
    }
    if (group === 'bulk' && operation === 'get' && operand !== undefined) {
      const keys = JSON.parse(await readFile(operand, 'utf8')) as string[]
      const printed: Record<string, { value: string | null }> = {}
      for (const key of keys) printed[key] = { value: await local.kv.get(key) }
      return `${JSON.stringify(printed, null, 2)}\n`
    }
    if (group === 'key' && operation === 'list') {
      const prefix = flag('--prefix')
      const names: { name: string }[] = []
      let cursor: string | undefined
      do {
        const page = await local.kv.list({ ...(prefix === undefined ? {} : { prefix }), ...(cursor === undefined ? {} : { cursor }) })
        names.push(...page.keys.map(({ name }) => ({ name })))
        cursor = page.list_complete ? undefined : page.cursor
      } while (cursor !== undefined)
      return `${JSON.stringify(names, null, 2)}\n`
    }
    throw new Error(`the KV stand-in does not know: wrangler ${args.join(' ')}`)
  }
}
