import type { EndReason } from '../ending.ts'
import type { RelayObserver, RequestTrace } from '../telemetry/trace.ts'

/**
 * A session's request trace. Unlike a chat request, a session's generation can be over before
 * any browser has taken its first token (a short answer, a page slow to connect), and that moment
 * is the time to first token the user saw. So when the generation ends with a first token nobody
 * has taken yet, the record waits for the first connection that takes it, or for `waitMs`
 * (nobody came: the record says so with no client time). Decode speed and the total are still
 * measured to the generation's end.
 */
export class SessionTrace implements RelayObserver {
  readonly trace: RequestTrace
  #sawToken = false
  #delivered = false
  #pending: (() => void) | null = null
  #timer: ReturnType<typeof setTimeout> | null = null

  constructor(trace: RequestTrace) {
    this.trace = trace
  }

  attemptStarted(backendId: string): void {
    this.trace.attemptStarted(backendId)
  }

  firstTokenArrived(): void {
    this.#sawToken = true
    this.trace.firstTokenArrived()
  }

  firstTokenDelivered(): void {
    if (this.#delivered || !this.#sawToken) return
    this.#delivered = true
    this.trace.firstTokenDelivered()
    this.#pending?.()
  }

  /** Resolves once the record has been handed on. */
  finish(reason: Exclude<EndReason, 'refused'>, completionTokens: number, waitMs: number): Promise<void> {
    const endedAt = Date.now()
    return new Promise((resolve) => {
      const record = () => {
        if (this.#timer !== null) clearTimeout(this.#timer)
        this.#pending = null
        this.trace.completionTokens(completionTokens)
        this.trace.finish(reason, 200, endedAt)
        resolve()
      }
      if (!this.#sawToken || this.#delivered) return record()
      this.#pending = record
      this.#timer = setTimeout(record, waitMs)
    })
  }
}
