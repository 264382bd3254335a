// gpu-backend/compose.yaml, checked without Docker: it validates against the Compose
// Specification's JSON schema, the GPU services take one GPU each behind the backend key on a
// private network that only the Cloudflare Tunnel reaches, and the emulator profile, which
// `npm start` really runs, serves the same model behind the same key on loopback ports.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import { parse } from 'yaml'
import { afterAll, describe, expect, it } from 'vitest'
import { COMPOSE_FILE, emulatorServices, fleetServices, readComposeFile } from '../../scripts/fleet/compose.ts'
import { ROOT } from '../../scripts/processes.ts'
import { spawnEmulator, type RunningEmulator } from '../../scripts/stack.ts'
import { TEST_KEY } from './support.ts'

const require = createRequire(import.meta.url)

/**
 * The Compose Specification's schema (compose-spec/compose-go's compose_spec.json) as the dclint
 * package ships it (MIT; its update-compose-schema script takes it from the specification).
 */
function composeSchemaValidator() {
  const schema = JSON.parse(readFileSync(join(ROOT, 'node_modules/dclint/schemas/compose.schema.json'), 'utf8')) as { $schema: string }
  // Draft-07, named by its https address, which Ajv knows under its old http id.
  const draft07 = require('ajv/dist/refs/json-schema-draft-07.json') as Record<string, unknown>
  const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strictTypes: false })
  ajv.addMetaSchema({ ...draft07, $id: schema.$schema })
  return ajv.compile(schema)
}

interface Service {
  profiles?: string[]
  image?: string
  build?: { context: string; dockerfile: string }
  environment?: Record<string, string | null>
  secrets?: string[]
  volumes?: string[]
  ports?: { target: number; published: string; host_ip: string }[]
  healthcheck?: { test: string[]; interval: string; timeout: string; retries: number; start_period: string }
  deploy?: { resources: { reservations: { devices: { driver: string; device_ids: string[]; capabilities: string[] }[] } } }
  entrypoint?: string[]
  command?: string[]
  networks?: string[]
}

const document = parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as {
  services: Record<string, Service>
  secrets: Record<string, unknown>
  networks: Record<string, unknown>
}
const services = Object.entries(document.services)
const gpu = services.filter(([, service]) => service.profiles?.includes('gpu') && service.build !== undefined)
const tunnels = services.filter(([, service]) => service.image?.startsWith('cloudflare/cloudflared:'))
const emulators = services.filter(([, service]) => service.profiles?.includes('emulator'))

describe('gpu-backend/compose.yaml', () => {
  it('validates against the Compose Specification schema, which rejects a misspelt key', () => {
    const validate = composeSchemaValidator()
    expect(validate(document), JSON.stringify(validate.errors)).toBe(true)
    const broken = structuredClone(document)
    const devices = broken.services['vllm-0']?.deploy?.resources.reservations.devices[0] as Record<string, unknown>
    devices.capabilitys = devices.capabilities
    delete devices.capabilities
    expect(validate(broken)).toBe(false)
  })

  it('runs every service in exactly one profile, gpu or emulator, so the two never start together', () => {
    expect(services.map(([, service]) => service.profiles)).toEqual(services.map(() => [expect.stringMatching(/^(gpu|emulator)$/)]))
    expect(gpu.length).toBeGreaterThanOrEqual(2)
  })

  it('gives each vLLM container one NVIDIA GPU of its own', () => {
    const devices = gpu.map(([, service]) => service.deploy?.resources.reservations.devices)
    for (const reservation of devices) {
      expect(reservation).toEqual([{ driver: 'nvidia', device_ids: [expect.stringMatching(/^\d+$/)], capabilities: ['gpu'] }])
    }
    const ids = devices.map((reservation) => reservation?.[0]?.device_ids[0])
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('builds the vLLM containers from this directory, Dockerfile.awq when VLLM_DOCKERFILE says so', () => {
    for (const [, service] of gpu) expect(service.build).toEqual({ context: '.', dockerfile: '${VLLM_DOCKERFILE:-Dockerfile}' })
    for (const name of ['Dockerfile', 'Dockerfile.awq']) expect(existsSync(join(ROOT, 'gpu-backend', name))).toBe(true)
  })

  it('publishes no vLLM port: vLLM is on the private network only, beside the tunnel', () => {
    for (const [, service] of gpu) {
      expect(service.ports).toBeUndefined()
      expect(service.networks).toEqual(['gpu-private'])
    }
    expect(tunnels.map(([name, service]) => [name, service.profiles, service.networks, service.ports])).toEqual([
      ['cloudflared', ['gpu'], ['gpu-private'], undefined],
    ])
    // Nothing else joins that network, and nothing in the gpu profile publishes a port.
    const onPrivate = services.filter(([, service]) => service.networks?.includes('gpu-private')).map(([name]) => name)
    expect(onPrivate).toEqual([...gpu.map(([name]) => name), 'cloudflared'])
    for (const [, service] of services.filter(([, s]) => s.profiles?.includes('gpu'))) expect(service.ports).toBeUndefined()
    expect(document.networks).toEqual({ 'gpu-private': null })
    const file = readComposeFile(COMPOSE_FILE, {})
    expect(fleetServices(file, 'gpu').map((service) => service.reach.kind)).toEqual(gpu.map(() => 'tunnel'))
  })

  it('runs a pinned cloudflared with its config and credentials from files, none in the environment', () => {
    const [[, tunnel] = ['', {} as Service]] = tunnels
    expect(tunnel.image).toMatch(/^cloudflare\/cloudflared:\d{4}\.\d{1,2}\.\d+$/)
    expect(tunnel.command).toEqual(['tunnel', '--no-autoupdate', '--config', '/etc/cloudflared/config.yml', 'run'])
    expect(tunnel.volumes).toEqual(['./tunnel/config.yml:/etc/cloudflared/config.yml:ro'])
    expect(tunnel.environment).toBeUndefined()
    expect(tunnel.secrets).toEqual(['tunnel_credentials'])
    expect(document.secrets.tunnel_credentials).toEqual({ file: '${TUNNEL_CREDENTIALS:-./tunnel/credentials.json}' })
    // config.yml reads the credentials where Compose mounts the secret; the file itself is ignored by git.
    const config = parse(readFileSync(join(ROOT, 'gpu-backend/tunnel/config.yml'), 'utf8')) as {
      'credentials-file': string
      metrics: string
    }
    expect(config['credentials-file']).toBe('/run/secrets/tunnel_credentials')
    expect(readFileSync(join(ROOT, '.gitignore'), 'utf8').split('\n')).toContain('gpu-backend/tunnel/credentials.json')
    // The health check asks the metrics server config.yml opens.
    expect(tunnel.healthcheck?.test).toEqual(['CMD', 'cloudflared', 'tunnel', '--metrics', config.metrics, 'ready'])
  })

  it('publishes every emulator on its own port of BIND_ADDRESS, loopback unless set', () => {
    const ports = emulators.map(([, service]) => service.ports)
    for (const port of ports)
      expect(port).toEqual([{ target: 8000, published: expect.stringMatching(/^\d+$/), host_ip: '${BIND_ADDRESS:-127.0.0.1}' }])
    expect(new Set(ports.map((port) => port?.[0]?.published)).size).toBe(ports.length)
    expect(emulators.length).toBe(gpu.length)
    const file = readComposeFile(COMPOSE_FILE, {})
    expect(fleetServices(file, 'emulator').map((service) => service.reach)).toEqual(
      ports.map((port) => ({ kind: 'published', hostIp: '127.0.0.1', port: Number(port?.[0]?.published) })),
    )
  })

  it('gives the emulator profile the same key and /health check as vLLM', () => {
    for (const [, service] of [...gpu, ...emulators]) {
      expect(service.secrets).toEqual(['backend_api_key'])
      expect(service.healthcheck?.test.join(' ')).toContain('http://127.0.0.1:8000/health')
      expect(service.healthcheck).toMatchObject({ interval: '15s', timeout: '5s', retries: 3 })
    }
    // vLLM needs minutes to load its weights the first time; the emulator starts at once.
    for (const [, service] of gpu) expect(service.healthcheck?.start_period).toBe('600s')
    // The key is a Compose secret from BACKEND_API_KEY, the Worker's secret of the same name:
    // a file in the container, never an environment value that docker inspect would show.
    expect(document.secrets.backend_api_key).toEqual({ environment: 'BACKEND_API_KEY' })
    for (const [, service] of gpu) expect(service.environment?.VLLM_API_KEY_FILE).toBe('/run/secrets/backend_api_key')
  })

  it('runs the emulator from the mounted repository on a node:22 image', () => {
    for (const [, service] of emulators) {
      expect(service.image).toMatch(/^node:22[-.]/)
      expect(service.volumes).toEqual(['..:/app:ro'])
      expect(service.command?.slice(0, 2)).toEqual(['node', 'gpu-backend/emulator/main.ts'])
    }
  })

  it("the emulator's key wrapper passes the secret as VLLM_API_KEY, and refuses to start without it", async () => {
    const [, service] = emulators[0] ?? []
    const [shell = 'sh', flagC = '-c', script = '', name = 'emulator'] = (service?.entrypoint ?? []).map((part) =>
      part.replaceAll('$$', '$'),
    )
    const run = (wrapper: string, ...command: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(shell, [flagC, wrapper, name, ...command], (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
        )
      })
    // This machine has no /run/secrets/backend_api_key: the wrapper as written refuses.
    expect(existsSync('/run/secrets/backend_api_key')).toBe(false)
    expect(await run(script, 'true')).toEqual({
      code: 78,
      stdout: '',
      stderr: 'refusing to start without the backend API key: set BACKEND_API_KEY\n',
    })
    // With the secret file in place, the command runs with the key in its environment.
    const dir = await mkdtemp(join(tmpdir(), 'compose-secret-'))
    try {
      const secret = join(dir, 'backend_api_key')
      await writeFile(secret, `${TEST_KEY}\n`)
      const withSecret = script.replace('/run/secrets/backend_api_key', secret)
      expect(await run(withSecret, 'sh', '-c', 'printf %s "$VLLM_API_KEY"')).toEqual({ code: 0, stdout: TEST_KEY, stderr: '' })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe("npm start's emulators, from the emulator profile", () => {
  const running: RunningEmulator[] = []
  afterAll(async () => {
    await Promise.all(running.map((emulator) => emulator.stop()))
  })

  it("are the profile's services, with their ports and flags less --host and --port", () => {
    const file = readComposeFile(COMPOSE_FILE, {})
    const found = emulatorServices(file)
    expect(found.map(({ name, port }) => ({ name, port }))).toEqual(
      emulators.map(([name, service]) => ({ name, port: Number(service.ports?.[0]?.published) })),
    )
    expect(found.map((emulator) => emulator.port)).toEqual([8001, 8002])
    expect(found.map((emulator) => emulator.args)).toEqual(
      emulators.map(() => [
        '--served-model-name',
        'deepseek-r1-distill-qwen-1.5b',
        '--max-model-len',
        '4096',
        '--max-num-seqs',
        '256',
        '--reasoning-parser',
        'deepseek_r1',
        '--scheduling-policy',
        'priority',
        '--ttft-ms',
        '150',
        '--itl-ms',
        '20',
      ]),
    )
  })

  it('start with those flags and serve the model as the fleet file configures it, behind the key', async () => {
    const [emulator] = emulatorServices(readComposeFile(COMPOSE_FILE, {}))
    const started = await spawnEmulator(emulator?.args ?? [], 0, { VLLM_API_KEY: TEST_KEY })
    running.push(started)
    expect((await fetch(`${started.url}/v1/models`)).status).toBe(401)
    const models = (await (await fetch(`${started.url}/v1/models`, { headers: { authorization: `Bearer ${TEST_KEY}` } })).json()) as {
      data: { id: string; max_model_len: number }[]
    }
    expect(models.data.map(({ id, max_model_len }) => ({ id, max_model_len }))).toEqual([
      { id: 'deepseek-r1-distill-qwen-1.5b', max_model_len: 4096 },
    ])
    expect((await fetch(`${started.url}/health`)).status).toBe(200)
    // Its queue orders by a request's priority, as the vLLM services' (entrypoint.sh).
    const options = (await (await fetch(`${started.url}/emulator/config`, { method: 'POST', body: '{}' })).json()) as {
      schedulingPolicy: string
    }
    expect(options.schedulingPolicy).toBe('priority')
  })
})
