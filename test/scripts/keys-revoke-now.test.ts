// `npm run keys -- revoke ID --url URL` against the built Worker served by workerd (with its own KV
// and Durable Objects) and a vLLM emulator: the key stops at once, though the Worker had cached it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runKeysCli } from '../../scripts/keys/cli.ts'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'revoke-test-backend-key'
const CHAT_KEY = `sk-${'c'.repeat(43)}`
const ADMIN_KEY = `sk-${'a'.repeat(43)}`
const KEY_ID = 'key_00000000000000c1'

let emulator: RunningEmulator
let worker: ServedWorker

beforeAll(async () => {
  const [script, started] = await Promise.all([
    buildPrivateWorker(),
    spawnEmulator(['--served-model-name', MODEL, '--api-key', BACKEND_KEY, '--ttft-ms', '5', '--itl-ms', '1']),
  ])
  emulator = started
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY },
    {
      keys: [
        { secret: CHAT_KEY, fields: { id: KEY_ID } },
        { secret: ADMIN_KEY, fields: { scopes: ['admin'] } },
      ],
    },
  )
})

afterAll(async () => {
  await worker?.dispose()
  await emulator?.stop()
})

function chat(): Promise<Response> {
  return fetch(`${worker.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CHAT_KEY}` },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: '[emulator reasoning_tokens=2 content_tokens=2] hi' }] }),
  })
}

function capture() {
  const lines: string[] = []
  return { lines, out: { log: (line: string) => lines.push(line), error: (line: string) => lines.push(line) } }
}

describe('keys revoke --url', () => {
  it('stops a key the Worker has cached on the very next request', async () => {
    const first = await chat()
    expect(first.status).toBe(200)
    await first.text()
    const { lines, out } = capture()
    expect(await runKeysCli(['revoke', KEY_ID, '--url', worker.url], { out, env: { GATEWAY_ADMIN_KEY: ADMIN_KEY } })).toBe(0)
    expect(lines.join('\n')).toMatch(/^Revoked key_00000000000000c1 \(stack\) through http:\/\/127\.0\.0\.1:\d+;.*\n.*within seconds/)
    const after = await chat()
    expect(after.status).toBe(401)
    expect(await after.json()).toMatchObject({ error: { code: 'invalid_api_key', message: 'This API key has been revoked.' } })
    const again = capture()
    expect(await runKeysCli(['revoke', KEY_ID, '--url', worker.url], { out: again.out, env: { GATEWAY_ADMIN_KEY: ADMIN_KEY } })).toBe(0)
    expect(again.lines[0]).toBe(`${KEY_ID} (stack) was already revoked.`)
  })

  it('needs GATEWAY_ADMIN_KEY and refuses the KV location options, which the Worker does not use', async () => {
    const missing = capture()
    expect(await runKeysCli(['revoke', KEY_ID, '--url', worker.url], { out: missing.out, env: {} })).toBe(2)
    expect(missing.lines.join('\n')).toContain('GATEWAY_ADMIN_KEY')
    const remote = capture()
    const argv = ['revoke', KEY_ID, '--url', worker.url, '--remote']
    expect(await runKeysCli(argv, { out: remote.out, env: { GATEWAY_ADMIN_KEY: ADMIN_KEY } })).toBe(2)
    expect(remote.lines.join('\n')).toContain('drop --remote')
  })
})
