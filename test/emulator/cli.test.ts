import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
// The project's Node 22 runs .ts files natively; the system node may be older.
const NODE = `${ROOT}node_modules/.bin/node`
const MAIN = `${ROOT}gpu-backend/emulator/main.ts`

function run(args: string[], env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  const child = spawn(NODE, [MAIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } })
  onTestFinished(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  return child
}

function output(stream: NodeJS.ReadableStream): () => string {
  let text = ''
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()))
  return () => text
}

async function firstLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  const stdout = output(child.stdout)
  while (!stdout().includes('\n')) await once(child.stdout, 'data')
  return stdout()
}

describe('emulator CLI', () => {
  it('prints one listening line, serves with the flags given, and exits cleanly on SIGTERM', async () => {
    const child = run(['--port', '0', '--served-model-name', 'r1', '--api-key', 'k', '--reasoning-parser', 'deepseek_r1'])
    const line = await firstLine(child)
    const match = /^vLLM emulator listening on (http:\/\/127\.0\.0\.1:\d+) \(model r1\)\n$/.exec(line)
    expect(match).not.toBeNull()
    const url = match?.[1] ?? ''
    expect((await fetch(`${url}/health`)).status).toBe(200)
    expect((await fetch(`${url}/v1/models`)).status).toBe(401)
    const models = await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer k' } })
    expect(((await models.json()) as { data: { id: string }[] }).data[0]?.id).toBe('r1')
    child.kill('SIGTERM')
    const [code] = (await once(child, 'exit')) as [number | null]
    expect(code).toBe(0)
  })

  it('takes the API key from VLLM_API_KEY, as vLLM does, when --api-key is not given', async () => {
    const child = run(['--port', '0'], { VLLM_API_KEY: 'from-env' })
    const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(await firstLine(child))?.[1] ?? ''
    expect((await fetch(`${url}/v1/models`)).status).toBe(401)
    expect((await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer from-env' } })).status).toBe(200)
  })

  it('refuses an unknown flag with the usage text and exit code 2', async () => {
    const child = run(['--port', '0', '--tensor-parallel-size', '2'])
    const stderr = output(child.stderr)
    const [code] = (await once(child, 'exit')) as [number | null]
    expect(code).toBe(2)
    expect(stderr()).toContain('usage: node gpu-backend/emulator/main.ts')
  })

  it('refuses a reasoning parser it does not emulate', async () => {
    const child = run(['--port', '0', '--reasoning-parser', 'qwen3'])
    const [code] = (await once(child, 'exit')) as [number | null]
    expect(code).toBe(2)
  })
})
