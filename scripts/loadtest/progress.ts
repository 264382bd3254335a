// The progress bar: one line on stderr, rewritten in place, only for a person at a terminal. It
// never goes to stdout, where the results go, and is off for --json and for redirected stderr.

/** process.stderr, or a stand-in in tests. */
export interface ProgressStream {
  isTTY?: boolean
  columns?: number
  write(text: string): unknown
}

export interface ProgressState {
  run: number
  runs: number
  done: number
  total: number
  errors: number
}

export interface Progress {
  update(state: ProgressState): void
  /** Clears the line, so the report starts on a clean one. */
  finish(): void
}

const NONE: Progress = { update: () => {}, finish: () => {} }
/** Redraws at most this often: thousands of requests per second must not flood the terminal. */
const REDRAW_MS = 100
const CLEAR_LINE = '\r\x1b[2K'

export function progressBar(stream: ProgressStream, enabled: boolean, now: () => number = performance.now.bind(performance)): Progress {
  if (!enabled || stream.isTTY !== true) return NONE
  let drawnAt = -Infinity
  let drawn = false
  return {
    update(state) {
      const last = state.done === state.total
      if (!last && now() - drawnAt < REDRAW_MS) return
      drawnAt = now()
      drawn = true
      stream.write(CLEAR_LINE + progressLine(state, stream.columns ?? 80))
    },
    finish() {
      if (drawn) stream.write(CLEAR_LINE)
    },
  }
}

/** `run 2/5 [=========>          ] 9/20 requests, 1 error`, fitted to the terminal's width. */
export function progressLine(state: ProgressState, columns: number): string {
  const errors = `${state.errors} error${state.errors === 1 ? '' : 's'}`
  const head = `run ${state.run}/${state.runs} `
  const tail = ` ${state.done}/${state.total} requests, ${errors}`
  const width = Math.max(0, Math.min(40, columns - 1 - head.length - tail.length - 2))
  if (width < 5) return (head.trimEnd() + tail).slice(0, Math.max(0, columns - 1))
  const filled = state.total === 0 ? width : Math.floor((state.done / state.total) * width)
  const bar = filled >= width ? '='.repeat(width) : `${'='.repeat(filled)}>${' '.repeat(width - filled - 1)}`
  return `${head}[${bar}]${tail}`
}
