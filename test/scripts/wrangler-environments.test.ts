// wrangler.toml has two configurations: the top level, the local stack's (npm start, wrangler dev,
// the tests), and [env.production], the deployment's (`wrangler deploy --env production`). Wrangler
// does not inherit vars, kv_namespaces or durable_objects into an environment, so the production
// one lists them all again: these tests fail when one drifts, when production would reach an
// address it was not given, and when the local stack could read the production configuration.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { unstable_readConfig } from 'wrangler'
import { describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/processes.ts'

const CONFIG = join(ROOT, 'wrangler.toml')
const local = unstable_readConfig({ config: CONFIG, env: undefined })
const production = unstable_readConfig({ config: CONFIG, env: 'production' })

type Config = ReturnType<typeof unstable_readConfig>
interface KvBinding {
  binding: string
  id?: string
}
interface ObjectBinding {
  name: string
  class_name: string
  script_name?: string
}

const vars = (config: Config) => config.vars as Record<string, string>
const namespaces = (config: Config) => config.kv_namespaces as KvBinding[]
const kvBindings = (config: Config) => namespaces(config).map(({ binding }) => binding)
const objects = (config: Config) =>
  (config.durable_objects.bindings as ObjectBinding[]).map(({ name, class_name, script_name }) => ({ name, class_name, script_name }))

/** A host only this machine or its private network reaches. */
function isPrivateHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return (
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    host === '::1' ||
    host === '0.0.0.0' ||
    /^(127|10)\./.test(host) ||
    /^192\.168\./.test(host) ||
    /^172\.(1[6-9]|2\d|3[01])\./.test(host) ||
    /^169\.254\./.test(host) ||
    /^f[cd][0-9a-f]{2}:/.test(host) ||
    /^fe80:/.test(host)
  )
}

describe('wrangler.toml [env.production]', () => {
  it('declares every var the top level declares, and no other', () => {
    expect(Object.keys(vars(local)).length).toBeGreaterThan(40)
    expect(Object.keys(vars(production)).sort()).toEqual(Object.keys(vars(local)).sort())
  })

  it('declares every KV namespace and Durable Object binding the top level declares, with namespaces of its own', () => {
    expect(kvBindings(production).sort()).toEqual(kvBindings(local).sort())
    expect(objects(production)).toEqual(objects(local))
    expect(objects(production).length).toBeGreaterThan(0)
    const localIds = new Set(namespaces(local).map(({ id }) => id))
    for (const { binding, id } of namespaces(production)) {
      expect(id, binding).toBeTruthy()
      expect(localIds.has(id), `${binding} shares the local namespace ${id}`).toBe(false)
      expect(id, binding).not.toMatch(/-local$/)
    }
  })

  it('inherits the migrations, the cron probe and the build settings', () => {
    expect(production.migrations).toEqual(local.migrations)
    expect(production.migrations.length).toBeGreaterThan(0)
    expect(production.triggers.crons).toEqual(local.triggers.crons)
    expect(production.triggers.crons?.length).toBeGreaterThan(0)
    expect(production.main).toBe(local.main)
    expect(production.compatibility_date).toBe(local.compatibility_date)
    expect(production.compatibility_flags).toEqual(local.compatibility_flags)
    expect(production.rules).toEqual(local.rules)
  })

  it('has no default backend, and no var reaches a loopback or private address', () => {
    expect(vars(production).BACKEND_URLS).toBe('')
    for (const [name, value] of Object.entries(vars(production))) {
      for (const [url] of value.matchAll(/\bhttps?:\/\/[^\s,]+/g)) {
        expect(isPrivateHost(new URL(url).hostname), `${name}: ${url}`).toBe(false)
      }
    }
    // The local defaults are exactly such addresses; this check would catch them.
    const localUrls = (vars(local).BACKEND_URLS ?? '').split(',')
    expect(localUrls.every((url) => isPrivateHost(new URL(url).hostname))).toBe(true)
    expect(vars(production).PUBLIC_ORIGINS).toBe('')
  })

  it('is a separate Worker, so that a deploy of one never replaces the other', () => {
    expect(production.name).toBe(`${local.name}-production`)
  })
})

describe('the local configuration', () => {
  it('is the one the tests use: the worker project reads wrangler.toml with no environment', () => {
    const vitestConfig = readFileSync(join(ROOT, 'test/vitest.config.ts'), 'utf8')
    // The plugin's wrangler options: a config path, no `environment`.
    expect([...vitestConfig.matchAll(/\bwrangler: \{(.*)\},?$/gm)].map((match) => match[1]?.trim())).toEqual([
      'configPath: `${root}/wrangler.toml`',
    ])
    // wrangler (and the vitest plugin, npm start and the CLIs through it) takes CLOUDFLARE_ENV as --env.
    expect(process.env.CLOUDFLARE_ENV ?? '', 'CLOUDFLARE_ENV would make the tests read that environment').toBe('')
  })

  it('runs the local emulators on the local namespaces', () => {
    expect(vars(local).BACKEND_URLS).toBe('http://127.0.0.1:8001,http://127.0.0.1:8002')
    for (const { id } of namespaces(local)) expect(id).toMatch(/^edge-proxy-[a-z]+-local$/)
  })

  it('no package.json script deploys the top level', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    for (const [name, command] of Object.entries(scripts)) {
      if (/wrangler\s+deploy\b/.test(command) && !/--dry-run\b/.test(command)) expect(command, name).toMatch(/--env[ =]production\b/)
    }
  })
})
