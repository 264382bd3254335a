// The supervisor npm start keeps its emulators with, on real child processes (small Node
// programs): a death is reported and restarted, restarts are bounded, stop() ends everything.
import { afterEach, describe, expect, it } from 'vitest'
import { startChild, waitForLine, type Child } from '../../scripts/processes.ts'
import { supervise, type Supervised } from '../../scripts/supervise.ts'

/** A Node program that says it is ready, then runs until killed (or exits at once with `exitCode`). */
async function startProgram(exitCode?: number): Promise<Child> {
  const body = exitCode === undefined ? 'setInterval(() => {}, 1000)' : `setTimeout(() => process.exit(${exitCode}), 20)`
  const child = startChild(process.execPath, ['-e', `console.log('ready'); ${body}`])
  await waitForLine(child.process, /^(ready)$/, 10_000)
  return child
}

function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Polls `lines` until one matches; bounded in time. */
async function lineMatching(lines: string[], pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const line = lines.find((candidate) => pattern.test(candidate))
    if (line !== undefined) return line
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${lines.join('\n')}`)
}

let running: Supervised<Child> | undefined
afterEach(async () => {
  await running?.stop()
  running = undefined
})

describe('the emulator supervisor', () => {
  it('reports a child killed with SIGKILL, with its pid and signal, and starts it again', async () => {
    const lines: string[] = []
    running = await supervise({ name: 'emulator 2', start: () => startProgram(), log: (line) => lines.push(line), initialDelayMs: 50 })
    const first = running.current()?.process.pid
    expect(isAlive(first)).toBe(true)
    process.kill(first as number, 'SIGKILL')
    expect(await lineMatching(lines, /exited/)).toBe(
      `emulator 2 (pid ${first}) exited (signal SIGKILL); restarting it in 50 ms (restart 1 of at most 5 a minute).`,
    )
    const restarted = await lineMatching(lines, /restarted/)
    const second = running.current()?.process.pid
    expect(restarted).toBe(`emulator 2 restarted (pid ${second}).`)
    expect(second).not.toBe(first)
    expect(isAlive(second)).toBe(true)
  })

  it('doubles the delay after each quick death and gives up after the restarts allowed in a minute', async () => {
    const lines: string[] = []
    let starts = 0
    running = await supervise({
      name: 'emulator 1',
      start: () => {
        starts++
        return startProgram(3)
      },
      log: (line) => lines.push(line),
      initialDelayMs: 10,
      maxRestartsPerMinute: 3,
    })
    await lineMatching(lines, /not restarting/)
    const deaths = lines.filter((line) => line.includes('exited (code 3)'))
    expect(deaths.map((line) => /restarting it in (\d+) ms/.exec(line)?.[1] ?? 'given up')).toEqual(['10', '20', '40', 'given up'])
    expect(lines.at(-1)).toMatch(/not restarting it: 3 restarts within a minute already/)
    expect(starts).toBe(4)
    expect(running.current()).toBeNull()
  })

  it('retries a start that fails, counting it as a restart', async () => {
    const lines: string[] = []
    let starts = 0
    running = await supervise({
      name: 'emulator 1',
      start: () => (++starts === 1 ? startProgram() : Promise.reject(new Error('port 8001 in use\nmore detail'))),
      log: (line) => lines.push(line),
      initialDelayMs: 10,
      maxRestartsPerMinute: 2,
    })
    running.current()?.process.kill('SIGKILL')
    await lineMatching(lines, /not restarting/)
    expect(lines.filter((line) => line.startsWith('emulator 1 did not start (port 8001 in use)'))).toHaveLength(2)
    expect(starts).toBe(3)
  })

  it('stops the child, and starts nothing more once stopped, even with a restart pending', async () => {
    const lines: string[] = []
    let starts = 0
    const supervised = await supervise({
      name: 'emulator 1',
      start: () => {
        starts++
        return startProgram()
      },
      log: (line) => lines.push(line),
      initialDelayMs: 300,
    })
    const pid = supervised.current()?.process.pid
    process.kill(pid as number, 'SIGKILL')
    await lineMatching(lines, /restarting it in 300 ms/)
    await supervised.stop()
    await new Promise((resolve) => setTimeout(resolve, 600))
    expect(starts).toBe(1)
    expect(lines.some((line) => line.includes('restarted'))).toBe(false)

    const again = await supervise({ name: 'emulator 2', start: () => startProgram(), log: (line) => lines.push(line) })
    const live = again.current()?.process.pid
    await again.stop()
    expect(isAlive(live)).toBe(false)
    expect(lines.filter((line) => line.startsWith('emulator 2'))).toEqual([])
  })
})
