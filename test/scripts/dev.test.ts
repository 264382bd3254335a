// `npm start` as a developer uses it: the stack comes up offline, a completion streams through
// wrangler dev, and Ctrl-C (SIGINT) leaves nothing running.
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT, startChild, stopChild, waitForLine, type Child } from '../../scripts/processes.ts'

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (typeof address !== 'object' || address === null) throw new Error('no port')
  return address.port
}

function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

let stack: Child | undefined
afterAll(async () => {
  if (stack) await stopChild(stack.process)
})

describe('npm start', () => {
  it('serves a streaming completion and the pages through wrangler dev and stops everything on Ctrl-C', { timeout: 90_000 }, async () => {
    const [workerPort, ...emulatorPorts] = await Promise.all([freePort(), freePort(), freePort()])
    stack = startChild(process.execPath, [
      join(ROOT, 'scripts/dev.ts'),
      '--port',
      String(workerPort),
      '--emulator-ports',
      emulatorPorts.join(','),
    ])
    const curl = await waitForLine(stack.process, /^(curl -N .*)$/, 60_000)
    expect(curl).toContain(`http://127.0.0.1:${workerPort}/v1/chat/completions`)
    const key = /-H "Authorization: Bearer (sk-[\w-]{43})"/.exec(curl)?.[1]
    expect(key).toBeDefined()

    const body = /-d '(.*)'$/.exec(curl)?.[1] ?? ''
    const response = await fetch(`http://127.0.0.1:${workerPort}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body,
    })
    expect(response.status).toBe(200)
    const text = await response.text()
    expect(text).toContain('"reasoning_content"')
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)

    // The pages are text modules beside the bundle: wrangler dev serves them too.
    const page = await fetch(`http://127.0.0.1:${workerPort}/playground`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('<script src="/playground/app.js" defer></script>')
    expect(await (await fetch(`http://127.0.0.1:${workerPort}/playground/app.js`)).text()).toContain('new EventSource(url)')

    const exited = new Promise<number | null>((resolve) => stack?.process.once('exit', (code) => resolve(code)))
    stack.process.kill('SIGINT')
    expect(await exited).toBe(0)
    for (const port of [workerPort, ...emulatorPorts]) expect(await isListening(port as number)).toBe(false)
  })
})
