import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const NODE = `${ROOT}node_modules/.bin/node`
const MAIN = `${ROOT}gpu-backend/emulator/main.ts`

describe('emulator CLI, stream-shape flags', () => {
  it('takes --merge-tokens, --dead-shutdown-ms, --reasoning-field reasoning_null, --preprocess-ms-per-token and --api-server-lag-ms', async () => {
    const args = ['--port', '0', '--merge-tokens', '3', '--dead-shutdown-ms', '250', '--reasoning-field', 'reasoning_null']
    args.push('--preprocess-ms-per-token', '0.5', '--api-server-lag-ms', '5')
    const child = spawn(NODE, [MAIN, ...args], { cwd: ROOT })
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    let stdout = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    while (!stdout.includes('\n')) await once(child.stdout, 'data')
    const url = /http:\/\/127\.0\.0\.1:\d+/.exec(stdout)?.[0] ?? ''
    const options = (await (await fetch(`${url}/emulator/config`, { method: 'POST', body: '{}' })).json()) as Record<string, unknown>
    expect(options).toMatchObject({ mergeTokens: 3, deadShutdownMs: 250, reasoningField: 'reasoning_null', engineDead: false })
    expect(options).toMatchObject({ preprocessMsPerToken: 0.5, apiServerLagMs: 5 })
  })
})
