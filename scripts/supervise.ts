import type { Child } from './processes.ts'

// Keeps one child process of the local stack running (npm start's emulators): one that dies is
// reported and started again, with a growing delay and a cap on restarts per minute, so a child
// that cannot start (a port taken, a broken flag) is given up on instead of spinning. The rest of
// the stack keeps running meanwhile: the Worker fails over to the other backends, as it does for a
// GPU host that goes away.

export interface SuperviseOptions<T extends Child> {
  /** How the child is named in the log lines, e.g. "emulator 2 (http://127.0.0.1:8002)". */
  name: string
  /** Starts the child; resolves once it is ready (rejects if it cannot start). */
  start: () => Promise<T>
  /** Where the lines go; they hold the name, the pid and the exit status, never a secret. */
  log: (line: string) => void
  /** Called with each child once it is ready, the first one included. */
  onStart?: (child: T) => void
  /** Restarts allowed within any 60 s; one more and the child is left down (default 5). */
  maxRestartsPerMinute?: number
  /** Delay before the first restart, doubled after each quick death (default 250 ms). */
  initialDelayMs?: number
  /** The longest delay (default 8 s). */
  maxDelayMs?: number
  /** A child that ran this long counts as healthy: the next restart starts from initialDelayMs (default 30 s). */
  stableAfterMs?: number
}

export interface Supervised<T extends Child> {
  /** The running child, or null while it is down (between a death and its restart, or given up). */
  current(): T | null
  /** Stops supervising: no more restarts, and the running child (or one starting) is stopped. */
  stop(): Promise<void>
}

const MINUTE_MS = 60_000

function exitStatus(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`
}

/** Starts the child and keeps it running; rejects only if the very first start fails. */
export async function supervise<T extends Child>(options: SuperviseOptions<T>): Promise<Supervised<T>> {
  const { name, start, log, onStart } = options
  const maxRestarts = options.maxRestartsPerMinute ?? 5
  const initialDelay = options.initialDelayMs ?? 250
  const maxDelay = options.maxDelayMs ?? 8_000
  const stableAfter = options.stableAfterMs ?? 30_000
  const restarts: number[] = []
  let child: T | null = null
  let starting: Promise<T | null> | null = null
  let timer: ReturnType<typeof setTimeout> | null = null
  let stopped = false
  let delay = initialDelay

  const watch = (running: T): void => {
    child = running
    onStart?.(running)
    const startedAt = Date.now()
    running.process.once('exit', (code, signal) => {
      child = null
      if (stopped) return
      if (Date.now() - startedAt >= stableAfter) delay = initialDelay
      scheduleRestart(`${name} (pid ${running.process.pid}) exited (${exitStatus(code, signal)})`)
    })
  }

  const scheduleRestart = (what: string): void => {
    const now = Date.now()
    while (restarts.length > 0 && (restarts[0] as number) <= now - MINUTE_MS) restarts.shift()
    if (restarts.length >= maxRestarts) {
      log(`${what}; not restarting it: ${restarts.length} restarts within a minute already. The Worker routes around it.`)
      return
    }
    restarts.push(now)
    log(`${what}; restarting it in ${delay} ms (restart ${restarts.length} of at most ${maxRestarts} a minute).`)
    timer = setTimeout(() => void restart(), delay)
    delay = Math.min(maxDelay, delay * 2)
  }

  const restart = async (): Promise<void> => {
    timer = null
    if (stopped) return
    starting = start().catch((error: unknown) => {
      const reason = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error)
      if (!stopped) scheduleRestart(`${name} did not start (${reason})`)
      return null
    })
    const running = await starting
    starting = null
    if (!running) return
    if (stopped) {
      await running.stop()
      return
    }
    log(`${name} restarted (pid ${running.process.pid}).`)
    watch(running)
  }

  watch(await start())
  return {
    current: () => child,
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      const late = await starting
      await Promise.all([child?.stop(), late?.stop()])
    },
  }
}
