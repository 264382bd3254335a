// gpu-backend/entrypoint.sh as a container runs it, with a fake `vllm` on PATH that records the
// command line it gets: the defaults, the overrides, and the refusals that keep a backend from
// ever serving without the shared key.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { argvProblems, flag, flagTable, runEntrypoint, TEST_KEY, type EntrypointRun } from './support.ts'

function expectKeyNeverPrinted(run: EntrypointRun): void {
  expect(run.stdout).not.toContain(TEST_KEY)
  expect(run.stderr).not.toContain(TEST_KEY)
  expect(run.argv ?? []).not.toContain(TEST_KEY)
}

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'entrypoint-key-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('entrypoint.sh', () => {
  it('starts vllm serve with the deployment settings by default, the key only in its environment', async () => {
    const run = await runEntrypoint({ VLLM_API_KEY: TEST_KEY })
    expect(run.code).toBe(0)
    expect(run.argv).toEqual([
      'serve',
      'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B',
      '--host',
      '0.0.0.0',
      '--port',
      '8000',
      '--served-model-name',
      'deepseek-r1-distill-qwen-1.5b',
      '--dtype',
      'bfloat16',
      '--max-model-len',
      '4096',
      '--gpu-memory-utilization',
      '0.9',
      '--max-num-seqs',
      '256',
      // The gateway's per-key priority classes reach vLLM's queue only under this policy.
      '--scheduling-policy',
      'priority',
      '--reasoning-parser',
      'deepseek_r1',
      '--enable-prefix-caching',
    ])
    expect(run.env?.VLLM_API_KEY).toBe(TEST_KEY)
    expect(run.env?.HF_HUB_OFFLINE).toBeUndefined()
    // The log line names the command, so operators see what runs; never the key.
    expect(run.stderr).toContain('edge-proxy-vllm: starting: vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B --host 0.0.0.0')
    expectKeyNeverPrinted(run)
  })

  it('takes every setting from an environment variable', async () => {
    const run = await runEntrypoint({
      VLLM_API_KEY: TEST_KEY,
      MODEL: '/models/local-copy',
      MODEL_REVISION: 'abc123',
      SERVED_MODEL_NAME: 'other-name',
      DTYPE: 'float16',
      QUANTIZATION: 'awq',
      MAX_MODEL_LEN: '8192',
      GPU_MEMORY_UTILIZATION: '0.85',
      MAX_NUM_SEQS: '64',
      ENABLE_PREFIX_CACHING: 'false',
      REASONING_PARSER: '',
      SCHEDULING_POLICY: 'fcfs',
      HOST: '127.0.0.1',
      PORT: '9000',
    })
    expect(run.code).toBe(0)
    const argv = run.argv ?? []
    expect(argv.slice(0, 2)).toEqual(['serve', '/models/local-copy'])
    expect({
      revision: flag(argv, '--revision'),
      name: flag(argv, '--served-model-name'),
      dtype: flag(argv, '--dtype'),
      quantization: flag(argv, '--quantization'),
      maxModelLen: flag(argv, '--max-model-len'),
      memory: flag(argv, '--gpu-memory-utilization'),
      maxNumSeqs: flag(argv, '--max-num-seqs'),
      schedulingPolicy: flag(argv, '--scheduling-policy'),
      host: flag(argv, '--host'),
      port: flag(argv, '--port'),
    }).toEqual({
      revision: 'abc123',
      name: 'other-name',
      dtype: 'float16',
      quantization: 'awq',
      maxModelLen: '8192',
      memory: '0.85',
      maxNumSeqs: '64',
      schedulingPolicy: 'fcfs',
      host: '127.0.0.1',
      port: '9000',
    })
    expect(argv).toContain('--no-enable-prefix-caching')
    expect(argv).not.toContain('--enable-prefix-caching')
    // An empty REASONING_PARSER turns the parser off; an unset one keeps the default.
    expect(argv).not.toContain('--reasoning-parser')
  })

  it("appends the container's arguments last, so they add flags or override the built ones", async () => {
    const run = await runEntrypoint({ VLLM_API_KEY: TEST_KEY }, ['--max-num-seqs', '32', '--enforce-eager'])
    expect(run.code).toBe(0)
    expect(run.argv?.slice(-3)).toEqual(['--max-num-seqs', '32', '--enforce-eager'])
  })

  it('refuses to start without a key and says how to give one', async () => {
    const run = await runEntrypoint({})
    expect(run.code).toBe(78)
    expect(run.argv).toBeNull()
    expect(run.stderr).toContain('refusing to start without the backend API key: set VLLM_API_KEY, or VLLM_API_KEY_FILE')
  })

  it('reads the key from the first line of VLLM_API_KEY_FILE and keeps the variable from vLLM', async () => {
    const file = join(dir, 'backend_api_key')
    await writeFile(file, `${TEST_KEY}\r\nsecond line\n`)
    const run = await runEntrypoint({ VLLM_API_KEY_FILE: file })
    expect(run.code).toBe(0)
    expect(run.env?.VLLM_API_KEY).toBe(TEST_KEY)
    expect(run.env?.VLLM_API_KEY_FILE).toBeUndefined()
    expectKeyNeverPrinted(run)
  })

  it.each([
    ['an unreadable key file', { VLLM_API_KEY_FILE: '/nonexistent/backend_api_key' }, 'is not a readable file'],
    ['both key sources at once', { VLLM_API_KEY: TEST_KEY, VLLM_API_KEY_FILE: '/dev/null' }, 'not both'],
    ['an empty key', { VLLM_API_KEY: '' }, 'refusing to start without the backend API key'],
    ['a short key', { VLLM_API_KEY: 'changeme' }, 'shorter than 16 characters'],
    ['a key with whitespace', { VLLM_API_KEY: `${TEST_KEY} x` }, 'contains whitespace'],
  ])('refuses %s before starting vLLM, without printing the key', async (_, env, message) => {
    const run = await runEntrypoint(env)
    expect(run.code).toBe(78)
    expect(run.argv).toBeNull()
    expect(run.stderr).toContain(message)
    expectKeyNeverPrinted(run)
    expect(run.stderr).not.toContain('changeme')
  })

  it.each([
    ['MAX_MODEL_LEN', '4k'],
    ['MAX_MODEL_LEN', '0'],
    ['MAX_NUM_SEQS', '-1'],
    ['MAX_NUM_SEQS', '1.5'],
    ['PORT', 'http'],
    ['GPU_MEMORY_UTILIZATION', '90'],
    ['GPU_MEMORY_UTILIZATION', '1.5'],
    ['GPU_MEMORY_UTILIZATION', '0'],
    ['GPU_MEMORY_UTILIZATION', '0.9.1'],
    ['ENABLE_PREFIX_CACHING', 'yes'],
    ['SCHEDULING_POLICY', 'lowest-first'],
    ['SCHEDULING_POLICY', 'PRIORITY'],
  ])('refuses %s=%j at once, naming the variable', async (name, value) => {
    const run = await runEntrypoint({ VLLM_API_KEY: TEST_KEY, [name]: value })
    expect(run.code).toBe(78)
    expect(run.argv).toBeNull()
    expect(run.stderr).toContain(`${name} must be`)
  })

  it('runs offline when the image has baked weights, and online when a mounted cache hides them', async () => {
    const baked = join(dir, 'baked')
    const mounted = join(dir, 'mounted')
    await Promise.all([mkdir(baked), mkdir(mounted)])
    await writeFile(join(baked, '.baked-weights'), '')
    expect((await runEntrypoint({ VLLM_API_KEY: TEST_KEY, HF_HOME: baked })).env?.HF_HUB_OFFLINE).toBe('1')
    expect((await runEntrypoint({ VLLM_API_KEY: TEST_KEY, HF_HOME: mounted })).env?.HF_HUB_OFFLINE).toBeUndefined()
    // An operator's explicit choice wins.
    expect((await runEntrypoint({ VLLM_API_KEY: TEST_KEY, HF_HOME: baked, HF_HUB_OFFLINE: '0' })).env?.HF_HUB_OFFLINE).toBe('0')
  })

  it(`passes only flags vLLM documents, with valid values, by default and with every setting changed`, async () => {
    const table = flagTable()
    const defaults = await runEntrypoint({ VLLM_API_KEY: TEST_KEY })
    const changed = await runEntrypoint({
      VLLM_API_KEY: TEST_KEY,
      DTYPE: 'half',
      QUANTIZATION: 'awq',
      MODEL_REVISION: 'main',
      ENABLE_PREFIX_CACHING: 'false',
      MAX_NUM_SEQS: '1',
      SCHEDULING_POLICY: 'fcfs',
    })
    expect(argvProblems(defaults.argv ?? [], table)).toEqual([])
    expect(argvProblems(changed.argv ?? [], table)).toEqual([])
    // The check itself catches what vLLM would refuse.
    const broken = [
      'serve',
      'model',
      '--dtype',
      'fp16',
      '--max-num-seqs',
      'many',
      '--scheduling-policy',
      'lifo',
      '--enable-prefix-cache',
      '--port',
    ]
    expect(argvProblems(broken, table)).toEqual([
      '--dtype fp16: not one of auto, half, float16, bfloat16, float, float32',
      '--max-num-seqs many: not a whole number',
      '--scheduling-policy lifo: not one of fcfs, priority',
      `--enable-prefix-cache: not in vllm-flags.json (vLLM ${table.vllm})`,
      '--port: needs a value',
    ])
  })
})
