// The Worker and its backends agree: every way this project starts a backend (entrypoint defaults,
// each Dockerfile, each compose service of both profiles) serves the model name the Worker sends
// (MODEL_ID; the aliases map to it), with the context length its budget assumes (MAX_MODEL_LEN),
// the reasoning parser it expects, the --max-num-seqs it routes by, and --scheduling-policy
// priority, without which the priority it sends from each key's class is ignored. A change on one
// side only fails here. And no flag that vLLM removed since v0.11.0 is passed anywhere: vLLM
// v0.20.2 refuses to start with one.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  COMPOSE_FILE,
  emulatorServices,
  fleetServices,
  readComposeFile,
  serviceEnvironment,
  type ComposeFile,
} from '../../scripts/fleet/compose.ts'
import { DEFAULT_MAX_CONCURRENCY } from '../../scripts/fleet/options.ts'
import {
  DOCKERFILES,
  flag,
  flagTable,
  GPU_BACKEND,
  imageEnv,
  parseDockerfile,
  REMOVED_FLAGS,
  removedFlagHits,
  runEntrypoint,
  TEST_KEY,
  workerVars,
} from './support.ts'

interface BackendSettings {
  source: string
  model: string | undefined
  servedModelName: string | undefined
  maxModelLen: string | undefined
  reasoningParser: string | undefined
  maxNumSeqs: string | undefined
  schedulingPolicy: string | undefined
}

let dir: string
/** The secret file that stands in for Compose's /run/secrets/backend_api_key. */
let keyFile: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drift-'))
  keyFile = join(dir, 'backend_api_key')
  await writeFile(keyFile, TEST_KEY)
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function fromEntrypoint(source: string, env: Record<string, string>): Promise<BackendSettings> {
  const key: Record<string, string> = env.VLLM_API_KEY_FILE === undefined ? { VLLM_API_KEY: TEST_KEY } : { VLLM_API_KEY_FILE: keyFile }
  const run = await runEntrypoint({ ...env, ...key })
  expect(run.code, run.stderr).toBe(0)
  const argv = run.argv ?? []
  return {
    source,
    model: argv[1],
    servedModelName: flag(argv, '--served-model-name'),
    maxModelLen: flag(argv, '--max-model-len'),
    reasoningParser: flag(argv, '--reasoning-parser'),
    maxNumSeqs: flag(argv, '--max-num-seqs'),
    schedulingPolicy: flag(argv, '--scheduling-policy'),
  }
}

/** Every backend configuration of the project, as vLLM (or the emulator) would receive it. */
async function allBackendSettings(compose: ComposeFile): Promise<BackendSettings[]> {
  const settings = [await fromEntrypoint('entrypoint.sh defaults', {})]
  const images = Object.fromEntries(DOCKERFILES.map((name) => [name, imageEnv(parseDockerfile(name))]))
  for (const name of DOCKERFILES) settings.push(await fromEntrypoint(name, images[name] ?? {}))
  for (const [service, definition] of Object.entries(compose.services)) {
    // The vLLM services: the gpu profile's services built from the Dockerfiles (not cloudflared).
    if (!(definition.profiles as string[] | undefined)?.includes('gpu') || !('build' in definition)) continue
    // Either image may be under the service (VLLM_DOCKERFILE); the service's environment wins.
    for (const name of DOCKERFILES) {
      settings.push(await fromEntrypoint(`compose ${service} (${name})`, { ...images[name], ...serviceEnvironment(compose, definition) }))
    }
  }
  for (const emulator of emulatorServices(compose)) {
    settings.push({
      source: `compose ${emulator.name}`,
      model: undefined,
      servedModelName: flag(emulator.args, '--served-model-name'),
      maxModelLen: flag(emulator.args, '--max-model-len'),
      reasoningParser: flag(emulator.args, '--reasoning-parser'),
      maxNumSeqs: flag(emulator.args, '--max-num-seqs'),
      schedulingPolicy: flag(emulator.args, '--scheduling-policy'),
    })
  }
  return settings
}

/** What differs from the Worker's configuration, one line per backend configuration and setting. */
function drift(settings: BackendSettings[]): string[] {
  const worker = workerVars()
  const problems: string[] = []
  for (const backend of settings) {
    if (backend.servedModelName !== worker.modelId)
      problems.push(`${backend.source}: served model ${backend.servedModelName}, Worker MODEL_ID ${worker.modelId}`)
    if (Number(backend.maxModelLen) !== worker.maxModelLen)
      problems.push(`${backend.source}: max-model-len ${backend.maxModelLen}, Worker MAX_MODEL_LEN ${worker.maxModelLen}`)
    if (backend.reasoningParser !== 'deepseek_r1')
      problems.push(`${backend.source}: reasoning parser ${backend.reasoningParser}, the Worker expects deepseek_r1`)
    if (Number(backend.maxNumSeqs) !== worker.maxConcurrency)
      problems.push(`${backend.source}: max-num-seqs ${backend.maxNumSeqs}, Worker BACKEND_MAX_CONCURRENCY ${worker.maxConcurrency}`)
    // The Worker sends each request's priority from its key's class; vLLM's default, fcfs, ignores it.
    if (backend.schedulingPolicy !== 'priority')
      problems.push(`${backend.source}: scheduling policy ${backend.schedulingPolicy}, the Worker's priority classes need priority`)
  }
  return problems
}

describe('Worker and backend configuration', () => {
  it('agree on the served model name, the context length, the reasoning parser, max-num-seqs and the scheduling policy everywhere', async () => {
    const settings = await allBackendSettings(readComposeFile(COMPOSE_FILE, {}))
    // 1 + 2 Dockerfiles + 2 GPU services × 2 images + 2 emulators.
    expect(settings.length).toBeGreaterThanOrEqual(9)
    expect(drift(settings)).toEqual([])
  })

  it('the original checkpoint is one of the names the Worker accepts for the model', async () => {
    const { model } = await fromEntrypoint('Dockerfile', imageEnv(parseDockerfile('Dockerfile')))
    expect(workerVars().aliases).toContain(model)
  })

  it('the fleet entries made from the compose file carry the max-num-seqs the backends run with', () => {
    const file = readComposeFile(COMPOSE_FILE, {})
    const maxNumSeqs = [...fleetServices(file, 'gpu'), ...fleetServices(file, 'emulator')].map((service) => service.maxNumSeqs)
    expect(new Set(maxNumSeqs)).toEqual(new Set([workerVars().maxConcurrency]))
    // And `npm run fleet -- add` without --max-concurrency assumes the same.
    expect(DEFAULT_MAX_CONCURRENCY).toBe(workerVars().maxConcurrency)
  })

  it('fails when the fleet file drifts from wrangler.toml', async () => {
    const copy = join(dir, 'compose.yaml')
    await copyFile(COMPOSE_FILE, copy)
    const text = await readFile(copy, 'utf8')
    await writeFile(
      copy,
      text
        .replace('MAX_MODEL_LEN: "4096"', 'MAX_MODEL_LEN: "8192"')
        .replaceAll('- deepseek-r1-distill-qwen-1.5b', '- deepseek-r1')
        .replace('SCHEDULING_POLICY:\n', 'SCHEDULING_POLICY: fcfs\n')
        .replace('      - --scheduling-policy\n      - priority\n', ''),
    )
    const problems = drift(await allBackendSettings(readComposeFile(copy, {})))
    expect(problems).toContain('compose vllm-0 (Dockerfile): max-model-len 8192, Worker MAX_MODEL_LEN 4096')
    expect(problems).toContain('compose emulator-1: served model deepseek-r1, Worker MODEL_ID deepseek-r1-distill-qwen-1.5b')
    expect(problems).toContain("compose vllm-1 (Dockerfile.awq): scheduling policy fcfs, the Worker's priority classes need priority")
    expect(problems).toContain("compose emulator-0: scheduling policy undefined, the Worker's priority classes need priority")
  })
})

describe('flags vLLM removed since v0.11.0', () => {
  it('appear nowhere in gpu-backend/ outside the emulator: no Dockerfile, compose file, script, table or doc passes them', () => {
    expect(removedFlagHits(GPU_BACKEND, ['emulator'])).toEqual([])
    const table = flagTable()
    for (const removed of REMOVED_FLAGS) {
      expect(Object.keys(table.flags)).not.toContain(removed)
      expect(Object.keys(table.notPassed)).not.toContain(removed)
    }
  })

  it('are not in the command line the entrypoint builds, by default or from any image or compose service', async () => {
    const settings = [await runEntrypoint({ VLLM_API_KEY: TEST_KEY })]
    for (const name of DOCKERFILES) settings.push(await runEntrypoint({ ...imageEnv(parseDockerfile(name)), VLLM_API_KEY: TEST_KEY }))
    for (const run of settings) {
      expect(run.code).toBe(0)
      for (const removed of REMOVED_FLAGS) expect(run.argv ?? []).not.toContain(removed)
    }
  })

  it('are found by the check wherever they are written, and not in longer flags', async () => {
    const root = join(dir, 'removed-flags')
    await mkdir(join(root, 'emulator'), { recursive: true })
    await mkdir(join(root, 'tunnel'), { recursive: true })
    await writeFile(join(root, 'Dockerfile'), 'CMD ["--max-num-seqs", "8", "--disable-log-requests"]\n')
    await writeFile(join(root, 'tunnel/notes.md'), 'run with --enable-reasoning=true\n')
    await writeFile(
      join(root, 'compose.yaml'),
      'command: [--enable-log-requests, --enable-reasoning-parser, --reasoning-parser, deepseek_r1]\n',
    )
    await writeFile(join(root, 'emulator/main.ts'), "// vLLM v0.11.0 took '--disable-log-requests'\n")
    expect(removedFlagHits(root, ['emulator']).sort()).toEqual([
      'Dockerfile: --disable-log-requests',
      'tunnel/notes.md: --enable-reasoning',
    ])
  })
})
