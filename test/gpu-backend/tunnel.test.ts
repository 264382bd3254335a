// The tunnel in front of the GPU host (gpu-backend/tunnel/config.yml), checked without
// cloudflared: the file has cloudflared's documented format, its rules let through exactly the
// allow-list on every vLLM hostname, every other route vLLM v0.11.0 registers is refused, and
// every backend call the Worker's code makes is on the allow-list.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import { COMPOSE_FILE } from '../../scripts/fleet/compose.ts'
import {
  allowList,
  backendCalls,
  matchingRule,
  TUNNEL_DIR,
  tunnelConfig,
  UnreadableFetch,
  vllmRoutes,
  workerBackendCalls,
  type IngressRule,
} from './tunnel-support.ts'

const config = tunnelConfig()
const allowed = allowList()
const allowedPaths = new Set(allowed.map((route) => route.path))
const compose = parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as {
  services: Record<string, { profiles?: string[]; build?: unknown }>
}
const vllmServices = Object.entries(compose.services)
  .filter(([, service]) => service.profiles?.includes('gpu') && service.build !== undefined)
  .map(([name]) => name)
/** vLLM hostname -> the compose service its rules reach. */
const hostnames = new Map(
  config.ingress
    .filter((rule) => rule.hostname !== undefined)
    .map((rule) => [rule.hostname ?? '', /^http:\/\/([^:]+):8000$/.exec(rule.service)?.[1]]),
)

function validator() {
  const schema = JSON.parse(readFileSync(join(TUNNEL_DIR, 'config.schema.json'), 'utf8')) as Record<string, unknown>
  return new Ajv({ allErrors: true, allowUnionTypes: true }).compile(schema)
}

describe('gpu-backend/tunnel/config.yml', () => {
  it("validates against cloudflared's documented format, which rejects a misspelt key or an origin with a path", () => {
    const validate = validator()
    expect(validate(config), JSON.stringify(validate.errors)).toBe(true)
    const misspelt = structuredClone(config) as unknown as { ingress: Record<string, unknown>[] }
    misspelt.ingress[0] = { hostname: 'a.example.com', servce: 'http://vllm-0:8000' }
    expect(validate(misspelt)).toBe(false)
    for (const rule of [
      { hostname: 'a.example.com', service: 'http://vllm-0:8000/v1' },
      { hostname: 'a.*.example.com', service: 'http://vllm-0:8000' },
      { hostname: 'a.example.com:443', service: 'http://vllm-0:8000' },
      { service: 'http_status:40' },
    ]) {
      expect(validate({ ...config, ingress: [rule, { service: 'http_status:404' }] }), JSON.stringify(rule)).toBe(false)
    }
    expect(validate({ ...config, tunnel: undefined })).toBe(false)
  })

  it('ends with the one catch-all rule, answering 404, and reaches only the vLLM services of the gpu profile', () => {
    const last = config.ingress.at(-1)
    expect(last).toEqual({ service: 'http_status:404' })
    // cloudflared refuses a catch-all before the end (ingress.go validateHostname); so does this test.
    const catchAll = (rule: IngressRule) => (rule.hostname === undefined || rule.hostname === '*') && rule.path === undefined
    expect(config.ingress.slice(0, -1).filter(catchAll)).toEqual([])
    for (const rule of config.ingress.slice(0, -1)) {
      expect(rule.service).toMatch(/^http:\/\/[\w-]+:8000$/)
      expect(vllmServices).toContain(/^http:\/\/([\w-]+):8000$/.exec(rule.service)?.[1])
      expect(rule.hostname).toMatch(/^[a-z0-9-]+(\.[a-z0-9-]+)+$/)
    }
    // One hostname per vLLM service, every service reached.
    expect([...hostnames.values()].sort()).toEqual([...vllmServices].sort())
  })

  it('has one rule per allow-listed path and hostname, each an anchored literal regex', () => {
    for (const rule of config.ingress.slice(0, -1)) {
      // ^/literal$ with no regex syntax in between: RE2 and JS read it alike, and it matches one path only.
      expect(rule.path).toMatch(/^\^\/[\w/-]+\$$/)
    }
    for (const hostname of hostnames.keys()) {
      const paths = config.ingress.filter((rule) => rule.hostname === hostname).map((rule) => rule.path?.slice(1, -1))
      expect(new Set(paths)).toEqual(allowedPaths)
      expect(paths.length).toBe(allowedPaths.size)
    }
  })
})

describe("the tunnel's rules against every route vLLM v0.11.0 registers", () => {
  const { source, routes } = vllmRoutes()

  it('the route list records where it was read from, and holds every allow-listed route', () => {
    expect(source).toMatchObject({ commit: '8d7da92fd', files: ['vllm/entrypoints/openai/api_server.py'] })
    expect(routes.length).toBeGreaterThanOrEqual(40)
    for (const route of allowed)
      expect(routes).toContainEqual(expect.objectContaining({ method: route.method, path: route.path, when: 'always' }))
    // The unguarded routes issue 16 is about are in the list, to be refused (but /tokenize, which
    // POST /v1/messages/count_tokens calls: it runs the tokenizer only, never the model).
    for (const path of [
      '/invocations',
      '/scale_elastic_ep',
      '/tokenize',
      '/detokenize',
      '/pooling',
      '/score',
      '/rerank',
      '/load',
      '/version',
    ])
      expect(routes.map((route) => route.path)).toContain(path)
  })

  it.each([...hostnames])(
    'on %s, lets through exactly the allow-listed paths, to its own service, and refuses the rest',
    (hostname, service) => {
      const through: string[] = []
      for (const route of routes) {
        const path = route.sample ?? route.path
        const rule = matchingRule(config.ingress, hostname, path)
        if (allowedPaths.has(route.path)) {
          expect(rule.service, `${route.method} ${path}`).toBe(`http://${service}:8000`)
          through.push(`${route.method} ${path}`)
        } else {
          expect(rule.service, `${route.method} ${path} (${route.when})`).toBe('http_status:404')
        }
      }
      // cloudflared cannot match methods: a path lets every method through, and vLLM answers 405 to a wrong one.
      expect(through.sort()).toEqual(['GET /health', 'GET /metrics', 'GET /v1/models', 'POST /tokenize', 'POST /v1/chat/completions'])
    },
  )

  it.each([
    '/v1/chat/completions/',
    '/v1/chat/completions/../../invocations',
    '/v1/chat/completionsX',
    '/x/v1/chat/completions',
    '//health',
    '/HEALTH',
    '/health/',
    '/metrics/extra',
    '/v1/models/deepseek-r1-distill-qwen-1.5b',
    '/',
  ])('refuses the near miss %s', (path) => {
    for (const hostname of hostnames.keys()) expect(matchingRule(config.ingress, hostname, path).service).toBe('http_status:404')
  })

  it('refuses every path on a hostname it does not know', () => {
    for (const path of [...allowedPaths, '/invocations'])
      expect(matchingRule(config.ingress, 'vllm-0.attacker.example', path).service).toBe('http_status:404')
  })
})

describe("the Worker's backend calls, collected from its code", () => {
  it('are all on the allow-list, method and path', () => {
    const calls = workerBackendCalls()
    expect(calls.map(({ file, method, path }) => `${file} ${method} ${path}`).sort()).toEqual(
      expect.arrayContaining([
        'src/fleet/probe.ts GET /health',
        'src/fleet/probe.ts GET /metrics',
        'src/dispatch/upstream.ts POST /v1/chat/completions',
        'src/dispatch/verdict.ts GET /health',
      ]),
    )
    for (const call of calls)
      expect(allowed, `${call.file}:${call.line}`).toContainEqual(expect.objectContaining({ method: call.method, path: call.path }))
  })

  it('fails loudly on a fetch it cannot read, rather than skip it', () => {
    expect(backendCalls('x.ts', 'fetch(`${backend.url}/v1/completions`, { method: "POST" })')).toEqual([
      { file: 'x.ts', line: 1, method: 'POST', path: '/v1/completions' },
    ])
    expect(backendCalls('x.ts', 'globalThis.fetch(`${b.url}/load`)')).toMatchObject([{ method: 'GET', path: '/load' }])
    for (const source of [
      'fetch(url)',
      'fetch(`${backend.url}${path}`)',
      'fetch(backend.url + "/tokenize")',
      'fetch(`${backend.url}/v1/${endpoint}`)',
      'fetch(`${backend.url}/health`, init)',
      'fetch(`${backend.url}/health`, { method })',
      'fetch(new Request(`${backend.url}/invocations`))',
    ]) {
      expect(() => backendCalls('x.ts', source), source).toThrow(UnreadableFetch)
    }
  })
})
