// What the GPU backend tests share: the entrypoint run with a fake `vllm` on PATH (so the real
// argv is seen without a GPU), the vLLM flag table, the Dockerfiles' image settings, and the
// Worker's own settings from wrangler.toml.
import { execFile } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DockerfileParser, PropertyInstruction, type Dockerfile } from 'dockerfile-ast'
import { unstable_readConfig } from 'wrangler'
import { ROOT } from '../../scripts/processes.ts'

export const GPU_BACKEND = join(ROOT, 'gpu-backend')
export const ENTRYPOINT = join(GPU_BACKEND, 'entrypoint.sh')
export const DOCKERFILES = ['Dockerfile', 'Dockerfile.awq'] as const

/** A key the entrypoint accepts; tests look for it in every output to prove it is never printed. */
export const TEST_KEY = 'bk-test-0123456789abcdef0123456789abcdef'

export interface EntrypointRun {
  code: number
  stdout: string
  stderr: string
  /** What `vllm` was started with; null when the entrypoint refused to start it. */
  argv: string[] | null
  /** The environment `vllm` saw. */
  env: Record<string, string> | null
}

/** The fake vllm: records its arguments and environment, then exits 0, as `vllm serve` never would. */
const FAKE_VLLM = `#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_VLLM_OUT/argv"
env > "$FAKE_VLLM_OUT/env"
`

/**
 * Runs gpu-backend/entrypoint.sh with only `env` (plus PATH) in its environment and `args` as the
 * container's arguments, as `docker run IMAGE ARGS...` would.
 */
export async function runEntrypoint(env: Record<string, string>, args: string[] = []): Promise<EntrypointRun> {
  const dir = await mkdtemp(join(tmpdir(), 'entrypoint-'))
  try {
    await writeFile(join(dir, 'vllm'), FAKE_VLLM)
    await chmod(join(dir, 'vllm'), 0o755)
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        '/bin/sh',
        [ENTRYPOINT, ...args],
        { env: { PATH: `${dir}:/usr/bin:/bin`, FAKE_VLLM_OUT: dir, ...env } },
        (error, stdout, stderr) => {
          resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
        },
      )
    })
    const argv = await readFile(join(dir, 'argv'), 'utf8').then(
      (text) => text.split('\n').slice(0, -1),
      () => null,
    )
    const vllmEnv = await readFile(join(dir, 'env'), 'utf8').then(parseEnv, () => null)
    return { ...result, argv, env: vllmEnv }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** A shell script (such as a Dockerfile's RUN step) run by /bin/sh with only `env`. */
export function runScript(script: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', script], { env }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
    )
  })
}

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const equals = line.indexOf('=')
    if (equals > 0) env[line.slice(0, equals)] = line.slice(equals + 1)
  }
  return env
}

/** The value after `flag` in an argv, or undefined. */
export function flag(argv: readonly string[], name: string): string | undefined {
  const index = argv.indexOf(name)
  return index === -1 ? undefined : argv[index + 1]
}

export interface FlagSpec {
  value: 'none' | 'string' | 'int' | 'fraction' | 'choice'
  min?: number
  max?: number
  choices?: string[]
  subset?: boolean
  doc: string
  /** Where the flag is defined at the table's release: a path in vLLM's repository and a line. */
  source: string
}

export interface FlagTable {
  vllm: string
  image: string
  /** The release the fleet ran before, to roll back to. */
  previous: { vllm: string; image: string }
  sources: string[]
  flags: Record<string, FlagSpec>
  /** Flags of the release checked and deliberately not passed, each with its source and why (and a `$comment` key). */
  notPassed: Record<string, { source: string; why: string }>
}

/**
 * Flags that vLLM removed after v0.11.0: v0.20.2's argparse refuses them, so a container given one
 * never starts. --disable-log-requests (logging is off unless --enable-log-requests) and
 * --enable-reasoning (--reasoning-parser alone turns reasoning on) appear nowhere under vllm/ at
 * the v0.20.2 tag.
 */
export const REMOVED_FLAGS = ['--disable-log-requests', '--enable-reasoning'] as const

/**
 * Where a removed flag appears in the files under `root`, as "path: flag" lines, skipping the
 * directories named in `skip` (relative to root). Reads every file as text.
 */
export function removedFlagHits(root: string, skip: readonly string[] = []): string[] {
  const hits: string[] = []
  const walk = (relative: string) => {
    for (const entry of readdirSync(join(root, relative), { withFileTypes: true })) {
      const path = relative === '' ? entry.name : `${relative}/${entry.name}`
      if (skip.includes(path)) continue
      if (entry.isDirectory()) walk(path)
      else if (entry.isFile()) {
        const text = readFileSync(join(root, path), 'utf8')
        for (const removed of REMOVED_FLAGS) if (new RegExp(`${removed}(?![\\w-])`).test(text)) hits.push(`${path}: ${removed}`)
      }
    }
  }
  walk('')
  return hits
}

export function flagTable(): FlagTable {
  return JSON.parse(readFileSync(join(GPU_BACKEND, 'vllm-flags.json'), 'utf8')) as FlagTable
}

/** What is wrong with a `vllm serve` argv by the table: unknown flags, missing or bad values, repeats. */
export function argvProblems(argv: readonly string[], table: FlagTable): string[] {
  const problems: string[] = []
  if (argv[0] !== 'serve') problems.push(`the command is not "serve": ${argv[0]}`)
  const model = argv[1]
  if (model === undefined || model.startsWith('-')) problems.push('the model is not the first argument after serve')
  const seen = new Set<string>()
  for (let i = 2; i < argv.length; i++) {
    const name = argv[i] ?? ''
    const spec = table.flags[name]
    if (!spec) {
      problems.push(`${name}: not in vllm-flags.json (vLLM ${table.vllm})`)
      continue
    }
    if (seen.has(name)) problems.push(`${name}: given twice`)
    seen.add(name)
    if (spec.value === 'none') continue
    const value = argv[++i]
    if (value === undefined || value.startsWith('--')) {
      problems.push(`${name}: needs a value`)
      continue
    }
    const problem = valueProblem(spec, value)
    if (problem) problems.push(`${name} ${value}: ${problem}`)
  }
  return problems
}

function valueProblem(spec: FlagSpec, value: string): string | null {
  switch (spec.value) {
    case 'string':
      return value === '' ? 'empty' : null
    case 'int': {
      if (!/^\d+$/.test(value)) return 'not a whole number'
      const number = Number(value)
      if (spec.min !== undefined && number < spec.min) return `below ${spec.min}`
      if (spec.max !== undefined && number > spec.max) return `above ${spec.max}`
      return null
    }
    case 'fraction': {
      const number = Number(value)
      return /^\d+(\.\d+)?$/.test(value) && number > 0 && number <= 1 ? null : 'not a fraction above 0 and at most 1'
    }
    case 'choice':
      return spec.choices?.includes(value) ? null : `not one of ${spec.choices?.join(', ')}`
    case 'none':
      return null
  }
}

export function parseDockerfile(name: string): Dockerfile {
  return DockerfileParser.parse(readFileSync(join(GPU_BACKEND, name), 'utf8'))
}

/**
 * The environment a container of the image starts with, from the Dockerfile's ENV instructions,
 * with ${VAR} references resolved from the ARG defaults and earlier ENVs (no build arguments).
 */
export function imageEnv(dockerfile: Dockerfile): Record<string, string> {
  const known: Record<string, string> = {}
  const env: Record<string, string> = {}
  const resolve = (value: string) =>
    value.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, braced?: string, bare?: string) => known[braced ?? bare ?? ''] ?? '')
  for (const instruction of dockerfile.getInstructions()) {
    const keyword = instruction.getKeyword()
    if ((keyword !== 'ARG' && keyword !== 'ENV') || !(instruction instanceof PropertyInstruction)) continue
    for (const property of instruction.getProperties()) {
      const value = resolve(property.getValue() ?? '')
      known[property.getName()] = value
      if (keyword === 'ENV') env[property.getName()] = value
    }
  }
  return env
}

/** The Worker's settings that the backends must agree with (wrangler.toml [vars]). */
export function workerVars(): { modelId: string; aliases: string[]; maxModelLen: number; maxConcurrency: number } {
  const vars = unstable_readConfig({ config: join(ROOT, 'wrangler.toml') }).vars as Record<string, string>
  return {
    modelId: String(vars.MODEL_ID),
    aliases: String(vars.MODEL_ALIASES)
      .split(',')
      .map((alias) => alias.trim()),
    maxModelLen: Number(vars.MAX_MODEL_LEN),
    maxConcurrency: Number(vars.BACKEND_MAX_CONCURRENCY),
  }
}
