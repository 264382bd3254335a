import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

/** The project root, whatever the current directory. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Environment that keeps wrangler fully offline: no telemetry, no update check, no cf lookup. */
export const OFFLINE_WRANGLER_ENV = {
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_HIDE_BANNER: 'true',
} as const

/**
 * Runs wrangler on the Node that runs this script (the project's Node 22), whatever is on PATH:
 * its shebang would otherwise pick the machine's older Node when a script is started directly.
 */
export function startWrangler(args: string[], options: SpawnOptions = {}): Child {
  return startChild(process.execPath, [join(ROOT, 'node_modules/wrangler/bin/wrangler.js'), ...args], {
    ...options,
    env: { ...process.env, ...OFFLINE_WRANGLER_ENV, ...options.env },
  })
}

export interface Child {
  process: ChildProcess
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process has exited. */
  stop(): Promise<void>
}

/**
 * Children still running when this process exits, for whatever reason (a failed benchmark, an
 * uncaught error, a test runner tearing down): they are killed then, so nothing outlives its
 * parent and keeps ports or CPU.
 */
const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

export function startChild(command: string, args: string[], options: SpawnOptions = {}): Child {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...options })
  running.add(child)
  child.once('exit', () => running.delete(child))
  return { process: child, stop: () => stopChild(child) }
}

export async function stopChild(child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/**
 * Resolves with the first capture group of the first stdout/stderr line matching `pattern`.
 * Rejects if the process exits first or nothing matches in time; the lines seen are in the error.
 */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const seen: string[] = []
    const streams = [child.stdout, child.stderr].filter((stream) => stream !== null)
    const readers = streams.map((stream) => createInterface({ input: stream }))
    const done = (error: Error | null, value?: string) => {
      clearTimeout(timer)
      child.off('exit', onExit)
      for (const reader of readers) reader.off('line', onLine)
      if (error) reject(error)
      else resolve(value ?? '')
    }
    const onLine = (line: string) => {
      seen.push(line)
      const match = pattern.exec(line)
      if (match) done(null, match[1] ?? match[0])
    }
    const onExit = (code: number | null) => done(new Error(`process exited (${code}) before printing ${pattern}:\n${seen.join('\n')}`))
    const timer = setTimeout(() => done(new Error(`no line matching ${pattern} within ${timeoutMs} ms:\n${seen.join('\n')}`)), timeoutMs)
    for (const reader of readers) reader.on('line', onLine)
    child.once('exit', onExit)
  })
}

/** A port free on 127.0.0.1 right now (the OS picks it); for a server that must know its URL before it starts. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (typeof address !== 'object' || address === null) throw new Error('no free port')
  return address.port
}

/** Whether something already listens on (or holds) `port` of 127.0.0.1, where the local stack binds. */
export async function portInUse(port: number): Promise<boolean> {
  const server = createServer()
  const error = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    server.once('error', resolve).listen(port, '127.0.0.1', () => resolve(null))
  })
  if (error === null) {
    await new Promise((resolve) => server.close(resolve))
    return false
  }
  if (error.code === 'EADDRINUSE') return true
  throw error
}
