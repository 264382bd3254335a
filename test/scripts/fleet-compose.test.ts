// `npm run fleet -- from-compose`: a GPU host's compose file turned into the fleet entries that
// register it, printed as add commands the fleet CLI itself accepts (or as the record), with the
// tunnel hostname (or the published address) the Worker reaches each backend at and the
// --max-num-seqs the backends run with.
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FLEET_KEY, fleetRecordSchema } from '../../src/fleet/records.ts'
import { runFleetCli } from '../../scripts/fleet/cli.ts'
import { interpolate } from '../../scripts/fleet/compose.ts'
import { parseCommand } from '../../scripts/fleet/options.ts'
import { ROOT } from '../../scripts/processes.ts'
import type { Run } from './cli-support.ts'

const NOW = 1_795_000_000_000

/** runFleetCli in this process, with the compose environment `env` and no KV at all. */
async function fromCompose(argv: string[], env: Record<string, string> = {}): Promise<Run> {
  const stdout: string[] = []
  const stderr: string[] = []
  const noKv = async (): Promise<string> => {
    throw new Error('from-compose must not touch KV')
  }
  const out = { log: (text: string) => stdout.push(text), error: (text: string) => stderr.push(text) }
  const code = await runFleetCli(['from-compose', ...argv], { run: noKv, out, now: () => NOW, env })
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') }
}

/** The printed commands, each as the argv `npm run fleet --` would pass on. */
function addCommands(stdout: string): string[][] {
  return stdout
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => {
      expect(line).toMatch(/^npm run fleet -- add /)
      return line.replace(/^npm run fleet -- /, '').split(' ')
    })
}

/** A tunnel id and hostnames that are not the shipped placeholders. */
const TUNNEL_ID = '6ff42ae2-765d-4adf-8112-31c55c1551ef'
const HOST = 'gpu-host.acme-gpus.net'

let dir: string
/** gpu-backend/compose.yaml beside a copy of its tunnel/config.yml filled in, as an operator would. */
let filledIn: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleet-compose-'))
  await mkdir(join(dir, 'host/tunnel'), { recursive: true })
  filledIn = join(dir, 'host/compose.yaml')
  await copyFile(join(ROOT, 'gpu-backend/compose.yaml'), filledIn)
  const config = await readFile(join(ROOT, 'gpu-backend/tunnel/config.yml'), 'utf8')
  expect(config).toMatch(/^tunnel: 0{8}-0{4}-0{4}-0{4}-0{12}$/m)
  await writeFile(
    join(dir, 'host/tunnel/config.yml'),
    config.replace(/^tunnel: .*$/m, `tunnel: ${TUNNEL_ID}`).replaceAll('gpu-host.example.com', HOST),
  )
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('fleet from-compose on gpu-backend/compose.yaml', () => {
  it.each([[[]], [['--json']], [['--remote', '--env', 'production']]])(
    'refuses the placeholders the repository ships (%j): exit 1, one message naming config.yml and what to put there',
    async (argv) => {
      const run = await fromCompose(argv)
      expect(run).toMatchObject({ code: 1, stdout: '' })
      expect(run.stderr.split('\n')).toEqual([
        'Refusing placeholders, so no fleet entry was printed. Change them:',
        '  gpu-backend/tunnel/config.yml has the placeholder tunnel id 00000000-0000-0000-0000-000000000000: put the UUID that `cloudflared tunnel create NAME` printed under `tunnel:` (docs/deploy.md, section 4).',
        '  vllm-0.gpu-host.example.com (example.com), vllm-1.gpu-host.example.com (example.com) are under names reserved for examples and tests (RFC 2606, RFC 6761), which never reach a backend: put your own hostnames in the ingress rules of gpu-backend/tunnel/config.yml, one per vLLM service, each routed to the tunnel with `cloudflared tunnel route dns` (docs/deploy.md, section 4).',
      ])
    },
  )

  it("prints one add command per GPU service, at its tunnel hostname from config.yml's ingress, with MAX_NUM_SEQS", async () => {
    const run = await fromCompose(['--file', filledIn])
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toContain(
      `# 2 backends of ${filledIn} (profile gpu), for the local FLEET namespace (add --remote --env production for the deployed one):`,
    )
    expect(run.stdout).not.toContain('loopback')
    expect(addCommands(run.stdout)).toEqual([
      ['add', 'vllm-0', '--url', `https://vllm-0.${HOST}`, '--max-concurrency', '256'],
      ['add', 'vllm-1', '--url', `https://vllm-1.${HOST}`, '--max-concurrency', '256'],
    ])
  })

  it.each([
    [
      '--url-template',
      ['--file', 'FILLED', '--url-template', 'https://{service}.gpu-a.example.com'],
      'give --url-template your own domain.',
    ],
    ['--url-template', ['--file', 'FILLED', '--url-template', 'https://{service}.gpu-a.test'], 'give --url-template your own domain.'],
    ['--host', ['--profile', 'emulator', '--host', 'gpu-box.example'], 'give --host the address the Worker reaches this machine at.'],
  ])('refuses reserved hostnames from %s, saying what to change', async (_, argv, fix) => {
    const run = await fromCompose(argv.map((arg) => (arg === 'FILLED' ? filledIn : arg)))
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain(fix)
    expect(run.stderr).not.toContain('tunnel id')
  })

  it('refuses example hostnames left in the ingress rules once the tunnel id is filled in', async () => {
    const sub = await mkdtemp(join(dir, 'hosts-'))
    await mkdir(join(sub, 'tunnel'))
    await copyFile(filledIn, join(sub, 'compose.yaml'))
    const config = await readFile(join(ROOT, 'gpu-backend/tunnel/config.yml'), 'utf8')
    await writeFile(join(sub, 'tunnel/config.yml'), config.replace(/^tunnel: .*$/m, `tunnel: ${TUNNEL_ID}`))
    const run = await fromCompose(['--file', join(sub, 'compose.yaml')])
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr.split('\n')).toHaveLength(2)
    expect(run.stderr).toContain(
      'vllm-0.gpu-host.example.com (example.com), vllm-1.gpu-host.example.com (example.com) are under names reserved',
    )
    expect(run.stderr).toContain(`put your own hostnames in the ingress rules of ${join(sub, 'tunnel/config.yml')}`)
  })

  it('refuses a tunnel config without a tunnel id', async () => {
    const sub = await mkdtemp(join(dir, 'no-id-'))
    await mkdir(join(sub, 'tunnel'))
    await copyFile(filledIn, join(sub, 'compose.yaml'))
    const config = await readFile(join(dir, 'host/tunnel/config.yml'), 'utf8')
    await writeFile(join(sub, 'tunnel/config.yml'), config.replace(/^tunnel: .*\n/m, ''))
    const run = await fromCompose(['--file', join(sub, 'compose.yaml')])
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain('tunnel/config.yml has no tunnel id: put the UUID')
    expect(run.stderr).not.toContain('reserved')
  })

  it('refuses --host for backends only the tunnel reaches, naming the hostname', async () => {
    for (const argv of [
      ['--host', '10.0.0.5'],
      ['--url-template', 'http://{host}:{port}'],
    ]) {
      const run = await fromCompose(['--file', filledIn, ...argv])
      expect(run).toMatchObject({ code: 1, stdout: '' })
      expect(run.stderr).toContain(`Service vllm-0 publishes no port: it is reached through the tunnel at vllm-0.${HOST}`)
    }
  })

  it('prints commands the fleet CLI accepts, for the id prefix, region and location given', async () => {
    const run = await fromCompose(['--file', filledIn, '--id-prefix', 'gpu-a-', '--region', 'eu-west', '--remote', '--env', 'production'], {
      MAX_NUM_SEQS: '64',
    })
    expect(run.code).toBe(0)
    expect(run.stdout).not.toContain('loopback')
    const commands = addCommands(run.stdout)
    expect(commands.map((argv) => parseCommand(argv))).toEqual([
      {
        name: 'add',
        target: expect.objectContaining({ remote: true, binding: 'FLEET', env: 'production' }),
        backend: {
          id: 'gpu-a-vllm-0',
          url: `https://vllm-0.${HOST}`,
          weight: 1,
          maxConcurrency: 64,
          region: 'eu-west',
          state: 'active',
        },
      },
      {
        name: 'add',
        target: expect.objectContaining({ remote: true, binding: 'FLEET', env: 'production' }),
        backend: {
          id: 'gpu-a-vllm-1',
          url: `https://vllm-1.${HOST}`,
          weight: 1,
          maxConcurrency: 64,
          region: 'eu-west',
          state: 'active',
        },
      },
    ])
  })

  it('fills a URL template, as for one tunnel hostname per backend', async () => {
    const run = await fromCompose(['--file', filledIn, '--url-template', 'https://{service}.gpu-a.acme-gpus.net', '--id-prefix', 'gpu-a-'])
    expect(addCommands(run.stdout).map((argv) => argv[3])).toEqual([
      'https://vllm-0.gpu-a.acme-gpus.net',
      'https://vllm-1.gpu-a.acme-gpus.net',
    ])
  })

  it("passes the tunnel's Access secret name on to every add command, and refuses a bad name with usage", async () => {
    const run = await fromCompose([
      '--file',
      filledIn,
      '--url-template',
      'https://{service}.gpu-a.acme-gpus.net',
      '--access-secret',
      'GPU_A',
    ])
    expect(run.code).toBe(0)
    const commands = addCommands(run.stdout)
    expect(commands.map((argv) => argv.slice(-2))).toEqual([
      ['--access-secret', 'GPU_A'],
      ['--access-secret', 'GPU_A'],
    ])
    expect(commands.map((argv) => parseCommand(argv))).toMatchObject([
      { backend: { accessSecret: 'GPU_A' } },
      { backend: { accessSecret: 'GPU_A' } },
    ])
    const bad = await fromCompose(['--access-secret', 'gpu-a'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--access-secret takes a NAME of 1 to 32')
  })

  it('reads the emulator profile the same way', async () => {
    const run = await fromCompose(['--profile', 'emulator', '--host', 'localhost'])
    expect(addCommands(run.stdout)).toEqual([
      ['add', 'emulator-0', '--url', 'http://localhost:8001', '--max-concurrency', '256'],
      ['add', 'emulator-1', '--url', 'http://localhost:8002', '--max-concurrency', '256'],
    ])
  })

  it('--json prints the fleet record the commands would make', async () => {
    const run = await fromCompose(['--file', filledIn, '--json'])
    expect(run.code).toBe(0)
    const record = fleetRecordSchema.parse(JSON.parse(run.stdout))
    expect(record).toEqual({
      version: 1,
      updated: NOW,
      backends: [
        { id: 'vllm-0', url: `https://vllm-0.${HOST}`, weight: 1, maxConcurrency: 256, region: null, state: 'active' },
        { id: 'vllm-1', url: `https://vllm-1.${HOST}`, weight: 1, maxConcurrency: 256, region: null, state: 'active' },
      ],
    })
  })

  it('its commands, run, make that fleet record', async () => {
    const store = new Map<string, string>()
    const memoryWrangler = async (args: string[]): Promise<string> => {
      const data: unknown = JSON.parse(await readFile(args[3] ?? '', 'utf8'))
      if (args[2] === 'get') return JSON.stringify(Object.fromEntries((data as string[]).map((key) => [key, store.get(key) ?? null])))
      for (const { key, value } of data as { key: string; value: string }[]) store.set(key, value)
      return 'Success!'
    }
    const out = { log: () => {}, error: () => {} }
    const printed = await fromCompose(['--file', filledIn])
    for (const argv of addCommands(printed.stdout)) expect(await runFleetCli(argv, { run: memoryWrangler, out, now: () => NOW })).toBe(0)
    const json = await fromCompose(['--file', filledIn, '--json'])
    expect(JSON.parse(store.get(FLEET_KEY) ?? 'null')).toEqual(JSON.parse(json.stdout))
  })

  it("runs from the real entry point, with the shell environment and the compose file's .env", async () => {
    const run = await new Promise<Run>((resolve) => {
      execFile(
        process.execPath,
        [join(ROOT, 'scripts/fleet.ts'), 'from-compose', '--file', filledIn],
        { cwd: ROOT, env: { ...process.env, MAX_NUM_SEQS: '32' } },
        (error, stdout, stderr) => {
          resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
        },
      )
    })
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(addCommands(run.stdout.trim())[0]).toEqual(['add', 'vllm-0', '--url', `https://vllm-0.${HOST}`, '--max-concurrency', '32'])
  })
})

describe('fleet from-compose on other compose files', () => {
  async function composeFile(name: string, text: string, dotEnv?: string, tunnelConfig?: string): Promise<string> {
    const sub = await mkdtemp(join(dir, `${name}-`))
    await writeFile(join(sub, 'compose.yaml'), text)
    if (dotEnv !== undefined) await writeFile(join(sub, '.env'), dotEnv)
    if (tunnelConfig !== undefined) await writeFile(join(sub, 'tunnel.yml'), tunnelConfig)
    return join(sub, 'compose.yaml')
  }

  const TUNNELLED = `services:
  a:
    image: x
  b:
    image: x
    environment: {MAX_NUM_SEQS: "8"}
  c:
    image: x
    ports: ["127.0.0.1:9003:8000"]
  tunnel:
    image: cloudflare/cloudflared:2026.8.2
    volumes: ["\${TUNNEL_CONFIG:-./tunnel.yml}:/etc/cloudflared/config.yml:ro"]
`

  it("takes each tunnelled service's hostname from the config the cloudflared service mounts, beside published ones", async () => {
    const config = `tunnel: ${TUNNEL_ID}
ingress:
  - { hostname: a.gpu.acme-gpus.net, path: ^/health$, service: http://a:8000 }
  - { hostname: a.gpu.acme-gpus.net, path: ^/metrics$, service: http://a:8000 }
  - { hostname: b.gpu.acme-gpus.net, service: "http://b:8000" }
  - { hostname: other.example.net, service: "http://elsewhere:8000" }
  - service: http_status:404
`
    const file = await composeFile('tunnel', TUNNELLED, undefined, config)
    const run = await fromCompose(['--file', file])
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(addCommands(run.stdout)).toEqual([
      ['add', 'a', '--url', 'https://a.gpu.acme-gpus.net', '--max-concurrency', '256'],
      ['add', 'b', '--url', 'https://b.gpu.acme-gpus.net', '--max-concurrency', '8'],
      ['add', 'c', '--url', 'http://127.0.0.1:9003', '--max-concurrency', '256'],
    ])
    const templated = await fromCompose(['--file', file, '--url-template', 'https://{hostname}/{id}', '--id-prefix', 'h-'])
    expect(templated).toMatchObject({ code: 1 })
    expect(templated.stderr).toContain('Service c is not behind a tunnel: {hostname} has no value.')
  })

  it.each([
    [
      'a tunnelled service that also publishes its port',
      `ingress:\n  - { hostname: c.gpu.acme-gpus.net, service: "http://c:8000" }\n  - service: http_status:404\n`,
      'Service c is reached through the tunnel (c.gpu.acme-gpus.net) but also publishes port 8000, which bypasses',
    ],
    [
      'a hostname reaching two services',
      `ingress:\n  - { hostname: x.example.net, path: ^/a$, service: "http://a:8000" }\n  - { hostname: x.example.net, service: "http://b:8000" }\n  - service: http_status:404\n`,
      'x.example.net reaches both a and b; one hostname per backend',
    ],
    [
      'a service at two hostnames',
      `ingress:\n  - { hostname: x.example.net, service: "http://a:8000" }\n  - { hostname: y.example.net, service: "http://a:8000" }\n  - service: http_status:404\n`,
      'Service a is reached at two tunnel hostnames, x.example.net and y.example.net',
    ],
    ['a config without ingress rules', 'tunnel: x\n', 'has no ingress rules, each with a service'],
  ])('exits 1 for %s, saying why', async (_, config, message) => {
    const file = await composeFile('tunnel-bad', TUNNELLED, undefined, config)
    const run = await fromCompose(['--file', file])
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain(message)
  })

  it('exits 1 for a cloudflared service without a mounted config', async () => {
    const file = await composeFile('tunnel-none', TUNNELLED.replace(/ {4}volumes: .*\n/, ''))
    const run = await fromCompose(['--file', file])
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain('Service tunnel runs cloudflared without a configuration mounted at /etc/cloudflared/config.yml.')
  })

  it('reads the short port syntax, IPv6 bind addresses, .env defaults and services without profiles', async () => {
    const file = await composeFile(
      'short',
      `services:
  a:
    image: x
    environment: ["MAX_NUM_SEQS=\${SEQS:-8}"]
    ports: ["\${ADDR}:9001:8000"]
  b:
    image: x
    ports: ["[::1]:9002:8000/tcp", "9100:9100"]
  c:
    image: x
    ports: ["9003:8000"]
    profiles: [other]
  d:
    image: x
`,
      '# comment\nADDR=10.1.2.3\nSEQS="16"\n',
    )
    const run = await fromCompose(['--file', file])
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(addCommands(run.stdout)).toEqual([
      ['add', 'a', '--url', 'http://10.1.2.3:9001', '--max-concurrency', '16'],
      // Quoted: the shell would take the brackets for a glob.
      ['add', 'b', '--url', "'http://[::1]:9002'", '--max-concurrency', '256'],
    ])
    expect(run.stdout).toContain('# b: a loopback address')
    // The shell's environment wins over .env, as with docker compose.
    const shell = await fromCompose(['--file', file], { ADDR: '10.9.9.9' })
    expect(addCommands(shell.stdout)[0]?.[3]).toBe('http://10.9.9.9:9001')
  })

  it.each([
    [
      'a service published on every interface, without --host',
      'services:\n  a:\n    image: x\n    ports: ["9001:8000"]\n',
      [],
      'published on every interface (0.0.0.0): pass --host',
    ],
    [
      'no service publishing port 8000',
      'services:\n  a:\n    image: x\n',
      [],
      'has no service in profile gpu that publishes port 8000 or that a cloudflared tunnel reaches',
    ],
    ['a port range', 'services:\n  a:\n    image: x\n    ports: ["127.0.0.1:9001-9002:8000"]\n', [], 'needs one fixed published port'],
    [
      'a bad MAX_NUM_SEQS',
      'services:\n  a:\n    image: x\n    environment: {MAX_NUM_SEQS: "0"}\n    ports: ["127.0.0.1:9001:8000"]\n',
      [],
      'max-num-seqs must be a whole number above 0',
    ],
    [
      'a service name that is no fleet id',
      'services:\n  GPU_A:\n    image: x\n    ports: ["127.0.0.1:9001:8000"]\n',
      [],
      'Service GPU_A: ID must be 1 to 63 lowercase letters',
    ],
    [
      'a required variable that is unset',
      'services:\n  a:\n    image: x\n    ports: ["${ADDR:?set ADDR}:9001:8000"]\n',
      [],
      'ADDR: set ADDR',
    ],
    [
      'URLs the template does not tell apart',
      'services:\n  a:\n    image: x\n    ports: ["127.0.0.1:9001:8000"]\n  b:\n    image: x\n    ports: ["127.0.0.2:9001:8000"]\n',
      ['--url-template', 'http://gpu:{port}'],
      'share the URL http://gpu:9001',
    ],
    ['YAML that does not parse', 'services: [\n', [], 'is not valid YAML'],
  ])('exits 1 for %s, saying why', async (_, text, extra, message) => {
    const file = await composeFile('bad', text)
    const run = await fromCompose(['--file', file, ...extra])
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain(message)
  })

  it('exits 1 for a compose file that does not exist', async () => {
    const run = await fromCompose(['--file', join(dir, 'missing.yaml')])
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain('Cannot read the compose file')
  })

  it.each([
    [['--url-template', 'https://gpu.example.com']],
    [['--persist-to', 'state']],
    [['--config', 'wrangler.toml']],
    [['--profile', '']],
    [['extra']],
    [['--weight', '2']],
  ])('rejects %j with usage and exit 2', async (argv) => {
    const run = await fromCompose(argv)
    expect(run.code).toBe(2)
    expect(run.stderr).toContain('Usage: npm run fleet')
  })
})

describe('compose interpolation', () => {
  it.each([
    ['$${literal}', {}, '${literal}'],
    ['${A}-$A', { A: 'x' }, 'x-x'],
    ['${A:-d}', { A: '' }, 'd'],
    ['${A-d}', { A: '' }, ''],
    ['${A-d}', {}, 'd'],
    ['${A:?}', { A: 'set' }, 'set'],
    ['${UNSET}', {}, ''],
  ])('%s with %j is %j', (value, env, expected) => {
    expect(interpolate(value, env)).toBe(expected)
  })
})
