// docs/deploy.md only gives commands that exist in this project: every npm script it runs is in
// package.json and its fleet and key command lines parse; every wrangler command is one the
// installed wrangler has, with the options it lists; every docker command names files, profiles,
// services and images of gpu-backend/; every cloudflared command is one of the tunnel set-up's,
// on the tunnel files of gpu-backend/tunnel/; the nginx example is filled in with exactly its
// template's variables. Nothing else is run as a command there.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { describe, expect, it } from 'vitest'
import { parseCommand as parseFleetCommand } from '../../scripts/fleet/options.ts'
import { parseCommand as parseKeysCommand } from '../../scripts/keys/options.ts'
import { OFFLINE_WRANGLER_ENV, ROOT } from '../../scripts/processes.ts'
import { flagTable, REMOVED_FLAGS } from './support.ts'

const DOC = readFileSync(join(ROOT, 'docs/deploy.md'), 'utf8')
const SHELL_BUILTINS = new Set(['umask', 'printf'])
/** Programs the guide may run besides the project's own; each is checked below or harmless. */
const PROGRAMS = new Set(['npm', 'npx', 'docker', 'node', 'curl', 'cloudflared', 'envsubst', 'nginx', 'chown', 'chmod', 'mkdir', 'rm'])
const NGINX_TEMPLATE = 'gpu-backend/tunnel/nginx.conf'
const TUNNEL_CONFIG = 'gpu-backend/tunnel/config.yml'

/** Shell words of one command line: quotes removed, no expansion. */
function words(line: string): string[] {
  const found: string[] = []
  const pattern = /'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g
  for (const match of line.matchAll(pattern)) found.push(match[1] ?? match[2] ?? match[3] ?? '')
  return found
}

/** The commands of the guide: shell lines of its code blocks, the "$ " lines and printed fleet commands of console blocks, and inline commands. */
function guideCommands(): string[][] {
  const commands: string[] = []
  for (const [, lang, body] of DOC.matchAll(/```(\w*)\n([\s\S]*?)```/g)) {
    if (lang !== 'sh' && lang !== 'console') continue
    for (const line of (body ?? '').replace(/\\\n\s*/g, ' ').split('\n')) {
      if (lang === 'console') {
        if (line.startsWith('$ ')) commands.push(line.slice(2))
        else if (line.startsWith('npm run fleet -- ')) commands.push(line)
      } else if (line.trim() !== '' && !line.trimStart().startsWith('#')) {
        commands.push(line)
      }
    }
  }
  const prose = DOC.replace(/```[\s\S]*?```/g, '')
  // Inline commands; a two-word span such as `docker inspect` names a tool rather than running it.
  for (const [, code] of prose.matchAll(/`([^`]+)`/g)) {
    if (/^(npm|npx|docker) \S+ \S+/.test(code ?? '')) commands.push(code ?? '')
  }
  return commands
    .flatMap((line) => line.replace(/\s+#\s.*$/, '').split(/\s*&&\s*/))
    .map((line) => withoutAssignments(words(line.replace(/\s*>\s*\S+$/, ''))))
    .filter((command) => command.length > 0)
}

/** A command without its leading NAME=value words (the environment it runs with). */
function withoutAssignments(command: string[]): string[] {
  const first = command.findIndex((word) => !/^[A-Z_][A-Z0-9_]*=/.test(word))
  return first === -1 ? [] : command.slice(first)
}

const commands = guideCommands()
const byProgram = (program: string) => commands.filter((command) => command[0] === program)

function wranglerHelp(path: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, 'node_modules/wrangler/bin/wrangler.js'), ...path, '--help'],
      { cwd: ROOT, env: { ...process.env, ...OFFLINE_WRANGLER_ENV } },
      (_, stdout, stderr) => resolve(`${stdout}${stderr}`),
    )
  })
}

describe('docs/deploy.md', () => {
  it('runs nothing but npm, npx wrangler, docker, node, curl, cloudflared, the nginx example and file commands', () => {
    expect(commands.length).toBeGreaterThan(25)
    expect(commands.filter(([program]) => !PROGRAMS.has(program ?? '') && !SHELL_BUILTINS.has(program ?? ''))).toEqual([])
    expect(byProgram('npx').filter((command) => command[1] !== 'wrangler')).toEqual([])
  })

  it('every npm command is a script of package.json, and its fleet and key command lines parse', () => {
    const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts
    for (const command of byProgram('npm')) {
      const [, verb, name, separator, ...args] = command
      if (verb === 'ci') continue
      if (verb === 'test') {
        // npm test -- --project node PATH: the path must exist.
        expect(existsSync(join(ROOT, command.at(-1) ?? ''))).toBe(true)
        continue
      }
      expect(verb, command.join(' ')).toBe('run')
      expect(Object.keys(scripts), command.join(' ')).toContain(name)
      if (name === 'fleet') expect(parseFleetCommand(args).name).toBe(args[0])
      if (name === 'keys') expect(parseKeysCommand(args).name).toBe(args[0])
      if (args.length > 0) expect(separator).toBe('--')
    }
    expect(byProgram('npm').some((command) => command.includes('from-compose'))).toBe(true)
  })

  it('every command that reaches the deployment names its wrangler environment, production', () => {
    const remote = commands.filter(
      (command) =>
        (command[0] === 'npx' && ['deploy', 'secret', 'kv'].includes(command[2] ?? '')) ||
        (command[0] === 'npm' && ['fleet', 'keys'].includes(command[2] ?? '') && command.includes('--remote')),
    )
    expect(remote.length).toBeGreaterThan(10)
    for (const command of remote) expect(command.join(' ')).toMatch(/ --env production\b/)
  })

  it('every wrangler command is one the installed wrangler has, with options it lists', { timeout: 60_000 }, async () => {
    const wrangler = byProgram('npx').map((command) => command.slice(2))
    const distinct = [...new Map(wrangler.map((command) => [command.join(' '), command])).values()]
    // The words of the command path and its positionals: not options, nor the environment --env names.
    const pathOf = (command: string[]) => command.filter((word, i) => !word.startsWith('-') && command[i - 1] !== '--env')
    const helps = await Promise.all(distinct.map((command) => wranglerHelp(pathOf(command))))
    for (const [index, command] of distinct.entries()) {
      const path = pathOf(command)
      const help = helps[index] ?? ''
      // The first line of a command's help is its usage: `wrangler kv namespace create <namespace>`.
      const usage = (help.split('\n').find((line) => line.startsWith('wrangler')) ?? '').split(' ').slice(1)
      const positional = (word: string) => /^[<[]/.test(word)
      const commandWords = usage.filter((word) => !positional(word))
      expect(path.slice(0, commandWords.length), `${command.join(' ')}: ${usage.join(' ')}`).toEqual(commandWords)
      expect(path.length - commandWords.length, command.join(' ')).toBeLessThanOrEqual(usage.filter(positional).length)
      for (const option of command.filter((word) => word.startsWith('--'))) expect(help, command.join(' ')).toContain(`${option} `)
    }
  })

  it('every docker command uses the files, profiles, services and images of gpu-backend/', () => {
    const compose = parse(readFileSync(join(ROOT, 'gpu-backend/compose.yaml'), 'utf8'), { merge: true }) as {
      services: Record<string, { profiles: string[] }>
    }
    const images = new Set(['edge-proxy-vllm', 'edge-proxy-vllm-awq', flagTable().image, 'vllm/vllm-openai:vX.Y.Z'])
    const containers = new Set<string>()
    const docker = byProgram('docker')
    expect(docker.length).toBeGreaterThan(8)
    for (const command of docker) {
      const text = command.join(' ')
      const [, verb, ...rest] = command
      if (verb === 'compose') {
        expect(rest.slice(0, 2), text).toEqual(['-f', 'gpu-backend/compose.yaml'])
        const profile = rest[3] ?? ''
        expect(rest[2], text).toBe('--profile')
        const services = Object.entries(compose.services)
          .filter(([, service]) => service.profiles.includes(profile))
          .map(([name]) => name)
        expect(services.length, text).toBeGreaterThan(0)
        const [subcommand, ...args] = rest.slice(4)
        expect(['up', 'ps', 'logs', 'build'], text).toContain(subcommand)
        const named = args.filter((word, i) => !word.startsWith('-') && args[i - 1] !== '--build-arg')
        for (const service of named) expect(services, text).toContain(service)
      } else if (verb === 'build') {
        const file = rest.indexOf('-f')
        if (file !== -1) expect(existsSync(join(ROOT, rest[file + 1] ?? '')), text).toBe(true)
        expect(existsSync(join(ROOT, rest.at(-1) ?? '', 'Dockerfile')), text).toBe(true)
        expect(images, text).toContain(rest[rest.indexOf('-t') + 1])
      } else if (verb === 'run') {
        const takesValue = new Set(['--name', '--restart', '--gpus', '--shm-size', '-p', '-v', '-e', '--entrypoint'])
        let i = 0
        while (i < rest.length && (rest[i] ?? '').startsWith('-')) i += takesValue.has(rest[i] ?? '') ? 2 : 1
        expect(images, text).toContain(rest[i])
        const name = rest.indexOf('--name')
        if (name !== -1) containers.add(rest[name + 1] ?? '')
        for (const mount of rest.filter((_, j) => rest[j - 1] === '-v'))
          expect(mount, text).toMatch(/^(hf-cache:\/models\/huggingface|"?\$PWD\/backend_api_key:\/run\/secrets\/backend_api_key:ro"?)$/)
      } else {
        expect(['logs', 'inspect'], text).toContain(verb)
        expect(containers, text).toContain(rest.at(-1))
      }
    }
  })

  it('every cloudflared command is a step of the tunnel set-up, on one tunnel and its ingress file', () => {
    const cloudflared = byProgram('cloudflared').map((command) => command.slice(1))
    expect(cloudflared.map((command) => command.slice(0, 2).join(' '))).toEqual(
      expect.arrayContaining(['tunnel login', 'tunnel create', 'tunnel route']),
    )
    const created = cloudflared.filter(([, verb]) => verb === 'create').map((command) => command[2])
    expect(created).toHaveLength(1)
    for (const command of cloudflared) {
      const text = command.join(' ')
      if (command[1] === '--config') {
        // cloudflared tunnel --config FILE ingress validate | ingress rule URL
        expect(command[2], text).toBe(TUNNEL_CONFIG)
        expect(['ingress validate', 'ingress rule'], text).toContain(command.slice(3, 5).join(' '))
        if (command[4] === 'rule') expect(command[5], text).toMatch(/^https:\/\/[\w.-]+\/\S*$/)
        continue
      }
      const [, verb, ...rest] = command
      if (verb === 'login') expect(rest, text).toEqual([])
      else if (verb === 'create') expect(rest, text).toHaveLength(1)
      else if (verb === 'route') {
        expect(rest.slice(0, 2), text).toEqual(['dns', created[0]])
        expect(rest[2], text).toMatch(/^[\w-]+(\.[\w-]+)+$/)
        expect(rest, text).toHaveLength(3)
      } else expect.fail(`not a step of the tunnel set-up: cloudflared ${text}`)
    }
  })

  it('fills the nginx example with exactly its template variables and runs nginx on the result', () => {
    const template = readFileSync(join(ROOT, NGINX_TEMPLATE), 'utf8')
    const variables = [...new Set([...template.matchAll(/\$\{(\w+)\}/g)].map((match) => match[1]))].sort()
    const envsubst = byProgram('envsubst')
    expect(envsubst).toHaveLength(1)
    const [, format, redirect, input] = envsubst[0] ?? []
    expect([...(format ?? '').matchAll(/\$\{(\w+)\}/g)].map((match) => match[1]).sort()).toEqual(variables)
    expect([redirect, input]).toEqual(['<', NGINX_TEMPLATE])
    const assigned = DOC.split('\n').find((line) => /^[A-Z_]+=.* envsubst /.test(line)) ?? ''
    for (const name of variables) expect(assigned).toContain(`${name}=`)
    const nginx = byProgram('nginx')
    expect(nginx.length).toBeGreaterThan(0)
    for (const command of nginx) {
      // -t, then -p PREFIX and -c FILE (the filled-in copy, never the template itself).
      const options = command.slice(1).filter((word) => word !== '-t')
      for (const [i, word] of options.entries()) {
        if (i % 2 === 0) expect(['-p', '-c'], command.join(' ')).toContain(word)
      }
      expect(options[options.indexOf('-c') + 1], command.join(' ')).not.toBe(NGINX_TEMPLATE)
    }
  })

  it('upgrades from the previous vLLM release to the pinned one backend by backend: drain, wait, replace, check, undrain', () => {
    const table = flagTable()
    const heading = `### From v${table.previous.vllm} to v${table.vllm}, one backend at a time`
    expect(DOC).toContain(heading)
    const section = DOC.slice(DOC.indexOf(heading), DOC.indexOf('\n### ', DOC.indexOf(heading) + heading.length))
    const lines = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap(([, body]) => (body ?? '').split('\n').map((line) => line.trim()))
    const step = (pattern: RegExp) => lines.findIndex((line) => pattern.test(line))
    const order = [
      step(/^docker compose .* build vllm-0$/),
      step(/^npm run fleet -- drain gpu-a-vllm-0 /),
      step(/^npm run fleet -- list /),
      step(/^docker compose .* up -d vllm-0$/),
      step(/^curl .*\/health$/),
      step(/^curl .*\/v1\/chat\/completions/),
      step(/^npm run fleet -- undrain gpu-a-vllm-0 /),
    ]
    expect(
      order.every((index) => index >= 0),
      JSON.stringify(order),
    ).toBe(true)
    expect([...order].sort((a, b) => a - b)).toEqual(order)
    // It links how drain behaves, names both images, and keeps the way back.
    expect(section).toContain('](fleet.md#')
    expect(DOC).toContain(table.image)
    expect(DOC).toContain(`FROM ${table.previous.image}`)
    for (const removed of REMOVED_FLAGS) expect(DOC).toContain(removed)
    expect(DOC).toContain('### What could not be checked without a GPU')
  })
})
