import type { Child } from './processes.ts'

// Keeps one child process of the local stack running (npm start's emulators): one that dies is
// reported and started again, with a growing delay and a cap on restarts per minute, so a child
// that cannot start (a port taken, a broken flag) is given up on instead of spinning. The rest of
// the stack keeps running meanwhile: the Worker fails over to the other backends, as it does for a
// GPU host that goes away.

export interface SuperviseOptions<T extends Child> {
  /** How the child is named in the log lines, e.g. "emulator 2". */
  name: string
  /** Starts the child; resolves once it is ready (rejects if it cannot start). */
  start: () => Promise<T>
  /** Where the lines go; they hold the name, the pid and the exit status, never a secret. */
  log: (line: string) => void
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
  const supervisor = new Supervisor(options)
  supervisor.watch(await options.start())
  return supervisor
}

class Supervisor<T extends Child> implements Supervised<T> {
  readonly #options: SuperviseOptions<T>
  readonly #maxRestarts: number
  readonly #initialDelay: number
  /** When each restart of the last minute was scheduled. */
  readonly #restarts: number[] = []
  #delay: number
  #child: T | null = null
  #starting: Promise<T | null> | null = null
  #timer: ReturnType<typeof setTimeout> | null = null
  #stopped = false

  constructor(options: SuperviseOptions<T>) {
    this.#options = options
    this.#maxRestarts = options.maxRestartsPerMinute ?? 5
    this.#initialDelay = options.initialDelayMs ?? 250
    this.#delay = this.#initialDelay
  }

  current(): T | null {
    return this.#child
  }

  watch(child: T): void {
    this.#child = child
    const startedAt = Date.now()
    child.process.once('exit', (code, signal) => {
      this.#child = null
      if (this.#stopped) return
      if (Date.now() - startedAt >= (this.#options.stableAfterMs ?? 30_000)) this.#delay = this.#initialDelay
      this.#scheduleRestart(`${this.#options.name} (pid ${child.process.pid}) exited (${exitStatus(code, signal)})`)
    })
  }

  #scheduleRestart(what: string): void {
    const now = Date.now()
    while (this.#restarts.length > 0 && (this.#restarts[0] as number) <= now - MINUTE_MS) this.#restarts.shift()
    if (this.#restarts.length >= this.#maxRestarts) {
      this.#options.log(
        `${what}; not restarting it: ${this.#restarts.length} restarts within a minute already. The Worker routes around it.`,
      )
      return
    }
    this.#restarts.push(now)
    this.#options.log(
      `${what}; restarting it in ${this.#delay} ms (restart ${this.#restarts.length} of at most ${this.#maxRestarts} a minute).`,
    )
    this.#timer = setTimeout(() => void this.#restart(), this.#delay)
    this.#delay = Math.min(this.#options.maxDelayMs ?? 8_000, this.#delay * 2)
  }

  async #restart(): Promise<void> {
    this.#timer = null
    if (this.#stopped) return
    this.#starting = this.#options.start().catch((error: unknown) => {
      // The first line only: a start error may quote the child's whole output.
      const reason = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error)
      if (!this.#stopped) this.#scheduleRestart(`${this.#options.name} did not start (${reason})`)
      return null
    })
    const running = await this.#starting
    this.#starting = null
    if (!running) return
    if (this.#stopped) {
      await running.stop()
      return
    }
    this.#options.log(`${this.#options.name} restarted (pid ${running.process.pid}).`)
    this.watch(running)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
    const late = await this.#starting
    await Promise.all([this.#child?.stop(), late?.stop()])
  }
}
