// `npm start` as a developer uses it: the stack comes up offline, a completion streams through
// wrangler dev, and Ctrl-C (SIGINT) leaves nothing running. And when one of its emulators dies:
// the death is reported and the emulator restarted, a stream on the other backend runs to [DONE],
// new requests keep succeeding through the Worker's failover, and Ctrl-C still stops everything.
// A port already taken is one line naming the flag that picks another.
// One file, so the two stacks run one after the other (they share .dev.vars).
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { ROOT, freePort, startChild, stopChild, waitForLine, type Child } from '../../scripts/processes.ts'

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

/** Every stdout and stderr line of the stack, and a bounded wait for one matching a pattern. */
function collectLines(child: Child) {
  const lines: string[] = []
  for (const stream of [child.process.stdout, child.process.stderr]) {
    if (stream) createInterface({ input: stream }).on('line', (line) => lines.push(line))
  }
  const waitFor = async (pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      for (const line of lines.slice(from)) {
        const match = pattern.exec(line)
        if (match) return match
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${lines.join('\n')}`)
  }
  return { lines, waitFor }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function runningOn(emulatorUrl: string): Promise<number> {
  const stats = (await (await fetch(`${emulatorUrl}/emulator/stats`)).json()) as { running: number }
  return stats.running
}

let stack: Child | undefined
const stateDirs: string[] = []
afterEach(async () => {
  if (stack) await stopChild(stack.process)
  stack = undefined
  for (const dir of stateDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
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

    // The emulators run as the GPU containers do: the queue by a request's priority (the key's class).
    for (const port of emulatorPorts) {
      const options = (await (await fetch(`http://127.0.0.1:${port}/emulator/config`, { method: 'POST', body: '{}' })).json()) as {
        schedulingPolicy: string
      }
      expect(options.schedulingPolicy, `emulator on ${port}`).toBe('priority')
    }

    const exited = new Promise<number | null>((resolve) => stack?.process.once('exit', (code) => resolve(code)))
    stack.process.kill('SIGINT')
    expect(await exited).toBe(0)
    for (const port of [workerPort, ...emulatorPorts]) expect(await isListening(port as number)).toBe(false)
  })

  it(
    'reports an emulator that dies and restarts it, keeps the other backend streaming, and still stops everything on Ctrl-C',
    { timeout: 120_000 },
    async () => {
      const [workerPort, ...emulatorPorts] = await Promise.all([freePort(), freePort(), freePort()])
      // Local state of its own (--persist-to): no limiter leases or keys left by another run.
      const stateDir = mkdtempSync(join(tmpdir(), 'npm-start-state-'))
      stateDirs.push(stateDir)
      const args = ['--port', String(workerPort), '--emulator-ports', emulatorPorts.join(','), '--persist-to', stateDir]
      // Its own process group, so that Ctrl-C can be sent as a terminal sends it: to the whole group.
      stack = startChild(process.execPath, [join(ROOT, 'scripts/dev.ts'), ...args], { detached: true })
      const { lines, waitFor } = collectLines(stack)
      const key = (await waitFor(/-H "Authorization: Bearer (sk-[\w-]{43})"/, 90_000))[1] as string
      const wranglerPid = Number((await waitFor(/^Worker .*\(wrangler pid (\d+)\)$/, 1_000))[1])
      const emulators = await Promise.all(
        emulatorPorts.map(async (port) => {
          const [, url, pid] = await waitFor(new RegExp(`^vLLM emulator  (http://127\\.0\\.0\\.1:${port}) \\(pid (\\d+)\\)$`), 1_000)
          return { url: url as string, pid: Number(pid) }
        }),
      )
      // The streams' tokens are slow (40 reasoning + content tokens, 150 ms apart: 6 s), so that they
      // are still running at the kill; asked for in their prompts, so the other requests stay fast.
      const SLOW = '[emulator ttft_ms=20 itl_ms=150]'
      const chat = (stream: boolean, content: string) =>
        fetch(`http://127.0.0.1:${workerPort}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: JSON.stringify({
            model: 'deepseek-r1',
            stream,
            max_tokens: stream ? undefined : 4,
            messages: [{ role: 'user', content }],
          }),
        })

      // Streams until each emulator runs one (routing decides where; bounded attempts).
      const open: { emulator: number; reader: ReadableStreamDefaultReader<string>; text: string }[] = []
      for (let i = 0; i < 12 && new Set(open.map((stream) => stream.emulator)).size < 2; i++) {
        const before = await Promise.all(emulators.map(({ url }) => runningOn(url)))
        const response = await chat(true, `${SLOW} Conversation ${i}: what is ${i} * 6?`)
        if (response.status !== 200) throw new Error(`stream ${i}: ${response.status} ${await response.text()}`)
        const reader = (response.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
        const text = (await reader.read()).value ?? ''
        // Which emulator took it: the one whose running count rose. Polled, since on a loaded
        // machine the first bytes can reach the client before the emulator's count is read.
        let emulator = -1
        for (let poll = 0; poll < 20 && emulator === -1; poll++) {
          const after = await Promise.all(emulators.map(({ url }) => runningOn(url)))
          emulator = after.findIndex((count, e) => count > (before[e] as number))
          if (emulator === -1) await new Promise((resolve) => setTimeout(resolve, 100))
        }
        open.push({ emulator, reader, text })
      }
      const onVictim = open.filter((stream) => stream.emulator === 1)
      const onOther = open.filter((stream) => stream.emulator === 0)
      expect(onVictim.length).toBeGreaterThan(0)
      expect(onOther.length).toBeGreaterThan(0)
      const victim = emulators[1] as { url: string; pid: number }

      const before = lines.length
      process.kill(victim.pid, 'SIGKILL')
      const reported = await waitFor(
        new RegExp(`^emulator 2 \\(pid ${victim.pid}\\) exited \\(signal SIGKILL\\); restarting it in \\d+ ms`),
        10_000,
        before,
      )
      expect(reported[0]).not.toContain(key)
      // Meanwhile (the victim is down or just back): new requests are answered, through failover if need be.
      for (let i = 0; i < 4; i++) expect((await chat(false, `Question ${i}`)).status).toBe(200)
      const restartedPid = Number((await waitFor(/^emulator 2 restarted \(pid (\d+)\)\.$/, 15_000, before))[1])
      expect(restartedPid).not.toBe(victim.pid)
      expect((await fetch(`${victim.url}/health`)).status).toBe(200)

      for (const stream of open) {
        for (let i = 0; i < 1_000; i++) {
          const { value, done } = await stream.reader.read()
          if (done) break
          stream.text += value
        }
        expect(stream.text.endsWith('data: [DONE]\n\n')).toBe(true)
      }
      // The streams on the other backend were never cut: they end normally, with no error event.
      for (const { text } of onOther) {
        expect(text).not.toContain('"error"')
        expect(text).toContain('"finish_reason":"stop"')
      }
      // Those on the killed one end with an error event, as in production.
      for (const { text } of onVictim) expect(text).toContain('"error"')

      // Ctrl-C in a terminal signals the whole process group, the children included.
      const exited = new Promise<number | null>((resolve) => stack?.process.once('exit', (code) => resolve(code)))
      const beforeStop = lines.length
      process.kill(-(stack.process.pid as number), 'SIGINT')
      expect(await exited).toBe(0)
      for (const pid of [emulators[0]?.pid as number, restartedPid, wranglerPid]) expect(isAlive(pid)).toBe(false)
      // Children that exit on the same Ctrl-C are not taken for deaths.
      expect(lines.slice(beforeStop).filter((line) => line.includes('restarting'))).toEqual([])
      for (const port of [workerPort, ...emulatorPorts]) expect(await isListening(port as number)).toBe(false)
    },
  )
})

describe.concurrent('npm start with a port taken', () => {
  it.each([
    [
      'Worker',
      (port: number, free: number[]) => ['--port', String(port), '--emulator-ports', free.join(',')],
      /^Port (\d+) \(the Worker\) is already in use: .*--port N\.$/,
    ],
    [
      'emulator',
      (port: number, free: number[]) => ['--port', String(free[0]), '--emulator-ports', `${free[1]},${port}`],
      /^Port (\d+) \(a vLLM emulator\) is already in use: .*--emulator-ports A,B\.$/,
    ],
  ] as const)(
    'says in one line that the %s port is taken and which flag picks another, and starts nothing',
    async (_, argsFor, message) => {
      const blocker = createServer()
      await new Promise<void>((resolve, reject) => blocker.once('error', reject).listen(0, '127.0.0.1', resolve))
      const port = (blocker.address() as AddressInfo).port
      try {
        const free = await Promise.all([freePort(), freePort()])
        const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          execFile(
            process.execPath,
            [join(ROOT, 'scripts/dev.ts'), ...argsFor(port, free)],
            { cwd: ROOT, timeout: 30_000 },
            (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
          )
        })
        expect(run).toMatchObject({ code: 1, stdout: '' })
        const lines = run.stderr.trimEnd().split('\n')
        expect(lines).toHaveLength(1)
        expect(lines[0]).toMatch(message)
        expect(message.exec(lines[0] ?? '')?.[1]).toBe(String(port))
        // Nothing was started: the other ports are still free.
        for (const other of free) expect(await isListening(other)).toBe(false)
      } finally {
        await new Promise((resolve) => blocker.close(resolve))
      }
    },
  )
})

describe('npm start with CLOUDFLARE_ENV set', () => {
  it('refuses in one line, since wrangler would run that environment instead of the local stack, and starts nothing', async () => {
    const free = await Promise.all([freePort(), freePort(), freePort()])
    const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(ROOT, 'scripts/dev.ts'), '--port', String(free[0]), '--emulator-ports', `${free[1]},${free[2]}`],
        { cwd: ROOT, timeout: 30_000, env: { ...process.env, CLOUDFLARE_ENV: 'production' } },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
      )
    })
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^CLOUDFLARE_ENV is set \("production"\): .*\[env\.production\].*Unset it/),
    ])
    for (const port of free) expect(await isListening(port)).toBe(false)
  })
})
