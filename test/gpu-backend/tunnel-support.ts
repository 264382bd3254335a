// What the tunnel tests share: the cloudflared configuration and the route lists of
// gpu-backend/tunnel/, cloudflared's rule matching, and the Worker's backend calls read from its
// source code.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import ts from 'typescript'
import { parse } from 'yaml'
import { ROOT } from '../../scripts/processes.ts'

export const TUNNEL_DIR = join(ROOT, 'gpu-backend/tunnel')

export interface IngressRule {
  hostname?: string
  path?: string
  service: string
}

export interface TunnelConfig {
  tunnel: string
  'credentials-file': string
  ingress: IngressRule[]
}

export interface AllowedRoute {
  method: string
  path: string
}

export interface VllmRoute extends AllowedRoute {
  /** A concrete path for a route with parameters. */
  sample?: string
  when: string
  function: string
}

export function tunnelConfig(): TunnelConfig {
  return parse(readFileSync(join(TUNNEL_DIR, 'config.yml'), 'utf8')) as TunnelConfig
}

export function allowList(): AllowedRoute[] {
  return (JSON.parse(readFileSync(join(TUNNEL_DIR, 'allow-list.json'), 'utf8')) as { routes: AllowedRoute[] }).routes
}

export function vllmRoutes(): { source: { commit: string; files: string[] }; routes: VllmRoute[] } {
  return JSON.parse(readFileSync(join(TUNNEL_DIR, 'vllm-v0.11.0-routes.json'), 'utf8')) as {
    source: { commit: string; files: string[] }
    routes: VllmRoute[]
  }
}

/** cloudflared's ingress/rule.go matchHost: exact (case-insensitive) or a leading "*." wildcard. */
function hostMatches(pattern: string | undefined, hostname: string): boolean {
  if (pattern === undefined || pattern === '' || pattern === '*') return true
  const host = hostname.toLowerCase()
  const want = pattern.toLowerCase()
  return want.startsWith('*.') ? host.endsWith(want.slice(1)) : host === want
}

/**
 * The rule cloudflared picks (ingress.go FindMatchingRule): the first whose hostname matches and
 * whose path regex matches the request's decoded path, the query excluded. Go's RE2 and JS
 * RegExp agree on the anchored literals config.yml uses (the tests check they are literals).
 */
export function matchingRule(rules: readonly IngressRule[], hostname: string, path: string): IngressRule {
  const rule = rules.find(
    (candidate) => hostMatches(candidate.hostname, hostname) && (candidate.path === undefined || new RegExp(candidate.path).test(path)),
  )
  if (!rule) throw new Error(`no rule matches ${hostname}${path}: config.yml has no catch-all`)
  return rule
}

export interface BackendCall {
  file: string
  line: number
  method: string
  path: string
}

/** A fetch call in the Worker's code that the collector cannot read: the test must fail. */
export class UnreadableFetch extends Error {}

/**
 * Every fetch() call in one TypeScript source, read as a backend call: the URL must be a template
 * `${<something>.url}/literal/path` and the method a string literal in an object literal
 * (default GET). Anything else throws, so a backend call the allow-list test cannot see never
 * passes unnoticed.
 */
export function backendCalls(file: string, source: string): BackendCall[] {
  const sourceFile = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true)
  const calls: BackendCall[] = []
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && isFetch(node.expression)) calls.push(readCall(sourceFile, file, node))
    ts.forEachChild(node, visit)
  }
  visit(sourceFile)
  return calls
}

function isFetch(callee: ts.Expression): boolean {
  if (ts.isIdentifier(callee)) return callee.text === 'fetch'
  return ts.isPropertyAccessExpression(callee) && callee.name.text === 'fetch' && callee.expression.getText() === 'globalThis'
}

function readCall(sourceFile: ts.SourceFile, file: string, call: ts.CallExpression): BackendCall {
  const line = sourceFile.getLineAndCharacterOfPosition(call.getStart()).line + 1
  const where = `${file}:${line}: ${call.getText().split('\n')[0]}`
  const [url, init] = call.arguments
  if (
    !url ||
    !ts.isTemplateExpression(url) ||
    url.head.text !== '' ||
    url.templateSpans.length !== 1 ||
    !/\.url$/.test(url.templateSpans[0]?.expression.getText() ?? '')
  ) {
    throw new UnreadableFetch(`${where}: the URL is not \`\${<backend>.url}/path\``)
  }
  const path = url.templateSpans[0]?.literal.text ?? ''
  if (!/^\/[\w./-]*$/.test(path)) throw new UnreadableFetch(`${where}: the path ${path} is not a literal path`)
  return { file, line, method: readMethod(where, init), path }
}

function readMethod(where: string, init: ts.Expression | undefined): string {
  if (init === undefined) return 'GET'
  if (!ts.isObjectLiteralExpression(init)) throw new UnreadableFetch(`${where}: the options are not an object literal`)
  const method = init.properties.find((property) => property.name?.getText() === 'method')
  if (method === undefined) return 'GET'
  if (!ts.isPropertyAssignment(method) || !ts.isStringLiteral(method.initializer))
    throw new UnreadableFetch(`${where}: the method is not a string literal`)
  return method.initializer.text.toUpperCase()
}

/** The Worker's .ts files (src/, less the browser pages' own scripts, which are .js). */
export function workerSources(dir = join(ROOT, 'src')): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort()
}

export function workerBackendCalls(): BackendCall[] {
  return workerSources().flatMap((path) => backendCalls(relative(ROOT, path), readFileSync(path, 'utf8')))
}
