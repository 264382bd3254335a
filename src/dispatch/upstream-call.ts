import type { Blame } from './verdict.ts'
import { ApiError } from '../errors.ts'
import type { Stage } from '../fleet/circuit.ts'
import type { TokenUse } from '../limits/ledger.ts'
import type { UpstreamChunk } from '../relay/chunk.ts'

/**
 * Why an upstream call was stopped. headers_timeout and first_event_timeout: a missed deadline that
 * the verdict (src/dispatch/verdict.ts) laid on the backend; request_too_slow: one it laid on the
 * request itself; deadline_unexplained: one that nothing explained yet.
 */
export type StopReason =
  'client_gone' | 'headers_timeout' | 'first_event_timeout' | 'deadline_unexplained' | 'idle_timeout' | 'request_too_slow' | 'relay_failed'

export interface UpstreamTimeouts {
  /**
   * From sending the request until the backend's response headers. vLLM sends them at once
   * (before the engine has scheduled the request), so a short bound finds a frozen backend (its
   * socket open, its process stopped) in seconds. Unset: only the first-event deadline applies.
   */
  headersMs?: number
  /** From sending the request until the first data event. */
  firstEventMs: number
  /** Longest silence between two data events once the stream is running. */
  idleMs: number
}

export interface UpstreamCallOptions extends UpstreamTimeouts {
  /** Runs once, at the first data event, with the time it took since the request was sent. */
  onFirstEvent?: (ms: number) => void
  /** Runs once, when the backend's response headers arrive. */
  onHeaders?: () => void
  /** Runs once when the call is over, however it ended. */
  onEnd?: () => void
  /** Runs once, when its answer reached the client (see `delivered`). */
  onDelivered?: () => void
  /**
   * Whose fault a missed headers or first-event deadline is (src/dispatch/verdict.ts). While it
   * judges, the call keeps waiting: an answer that comes meanwhile wins. Absent: the backend's.
   */
  judge?: (stage: Stage) => Promise<Blame>
}

/**
 * The life of one upstream request: the AbortSignal given to fetch, why it was stopped, and the
 * watchdog for the response-headers and first-event deadlines and mid-stream silence. A client that goes away stops it
 * at once, which makes vLLM abort the generation. The watchdog is one lazily re-armed timer, so a
 * token costs a clock read, not a timer.
 */
export class UpstreamCall {
  readonly signal: AbortSignal
  stopReason: StopReason | null = null
  /** The latest usage the backend reported (it sends a running count on every chunk). */
  used: TokenUse | null = null
  /** The latest completion tokens each choice reported, by choice index. */
  #perChoice = new Map<number, number>()
  #controller = new AbortController()
  #timeouts: UpstreamTimeouts
  #onFirstEvent: ((ms: number) => void) | undefined
  #onEnd: (() => void) | undefined
  #onHeaders: (() => void) | undefined
  #onDelivered: (() => void) | undefined
  #judge: ((stage: Stage) => Promise<Blame>) | undefined
  /** Stages whose deadline passed and went to the verdict (each is judged once). */
  #judged = new Set<Stage>()
  #ended = false
  #startedAt = Date.now()
  #lastEventAt = 0
  #headersAt = 0
  #timer: ReturnType<typeof setTimeout>
  #clientSignal: AbortSignal | undefined
  #onClientAbort = () => this.stop('client_gone')

  constructor(clientSignal: AbortSignal | undefined, options: UpstreamCallOptions) {
    this.signal = this.#controller.signal
    this.#timeouts = options
    this.#onFirstEvent = options.onFirstEvent
    this.#onEnd = options.onEnd
    this.#onHeaders = options.onHeaders
    this.#onDelivered = options.onDelivered
    this.#judge = options.judge
    this.#clientSignal = clientSignal
    this.#timer = setTimeout(this.#watch, Math.min(options.headersMs ?? Infinity, options.firstEventMs))
    clientSignal?.addEventListener('abort', this.#onClientAbort)
    if (clientSignal?.aborted) this.stop('client_gone')
  }

  /** The backend's response headers arrived: from now on the first-event deadline is what counts. */
  headersArrived(): void {
    if (this.#headersAt !== 0) return
    this.#headersAt = Date.now()
    this.#onHeaders?.()
  }

  /** When the request was sent (Unix ms). */
  get sentAt(): number {
    return this.#startedAt
  }

  /** Whether the call was stopped for a missed deadline laid on the backend (no headers or no first event in time). */
  get missedDeadline(): boolean {
    return this.stopReason === 'headers_timeout' || this.stopReason === 'first_event_timeout'
  }

  /** A data event arrived (see chunkArrived). */
  #eventArrived(): void {
    const first = this.#lastEventAt === 0
    this.#lastEventAt = Date.now()
    // The pending timer was for the first-event deadline; from now on silence is what counts.
    if (first && !this.stopReason) {
      clearTimeout(this.#timer)
      this.#timer = setTimeout(this.#watch, this.#timeouts.idleMs)
      this.#onFirstEvent?.(this.#lastEventAt - this.#startedAt)
    }
  }

  /**
   * Called for every upstream event the relay parsed. Only chunks count as the backend's first
   * event (its time to first event, a success for its circuit): an error event is not one.
   */
  chunkArrived(chunk: UpstreamChunk): void {
    if (chunk.kind !== 'delta' && chunk.kind !== 'usage') return
    this.#eventArrived()
    this.#usageOf(chunk)
  }

  /**
   * Keeps the latest token count a chunk reports. vLLM's running usage is per choice
   * (serving_chat.py: `completion_tokens = previous_num_tokens[i]` on choice i's chunk), so with
   * n > 1 the tokens used are the sum over choices; the final usage chunk (`choices: []`) has the
   * total itself.
   */
  #usageOf(chunk: UpstreamChunk): void {
    if (chunk.kind === 'usage') {
      this.used = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens }
      return
    }
    if (chunk.kind !== 'delta' || chunk.usage === null) return
    this.#perChoice.set(chunk.chunk.choices[0]?.index ?? 0, chunk.usage.completion_tokens)
    let completionTokens = 0
    for (const tokens of this.#perChoice.values()) completionTokens += tokens
    this.used = { promptTokens: chunk.usage.prompt_tokens, completionTokens }
  }

  /**
   * The relay committed this call's answer: a data event of it reached the client, so no other
   * attempt may replace it any more (no failover, no hedge). Tells the request's attempts once.
   */
  delivered(): void {
    const onDelivered = this.#onDelivered
    this.#onDelivered = undefined
    onDelivered?.()
  }

  get sawEvent(): boolean {
    return this.#lastEventAt !== 0
  }

  /** Aborts the upstream request (idempotent); the first reason wins. */
  stop(reason: StopReason): void {
    if (this.stopReason) return
    this.stopReason = reason
    this.end()
    this.#controller.abort(reason)
  }

  /** The request is over: no more watching (idempotent). */
  end(): void {
    clearTimeout(this.#timer)
    if (this.#ended) return
    this.#ended = true
    this.#clientSignal?.removeEventListener('abort', this.#onClientAbort)
    this.#onEnd?.()
  }

  /** The error a stop stands for, or null when the call was not stopped by a timeout or the client. */
  stopError(): ApiError | null {
    if (this.stopReason === 'client_gone') return clientClosed()
    if (this.stopReason === 'headers_timeout' || (this.stopReason === 'deadline_unexplained' && this.#headersAt === 0)) {
      return new ApiError(504, `The backend sent no response headers within ${this.#timeouts.headersMs} ms.`, {
        code: 'upstream_timeout',
      })
    }
    if (this.stopReason === 'first_event_timeout' || this.stopReason === 'deadline_unexplained') {
      return new ApiError(504, `The backend sent no first event within ${this.#timeouts.firstEventMs} ms.`, {
        code: 'upstream_timeout',
      })
    }
    if (this.stopReason === 'idle_timeout') {
      return new ApiError(504, `The backend sent nothing for ${this.#timeouts.idleMs} ms mid-stream.`, {
        code: 'upstream_timeout',
      })
    }
    if (this.stopReason === 'request_too_slow')
      return requestTooSlow(this.#headersAt === 0 ? this.#timeouts.headersMs : this.#timeouts.firstEventMs)
    return null
  }

  /**
   * What a relay failure means for the client: the stop the gateway decided (timeout, client
   * gone), else the ApiError thrown (malformed event, backend error event), else a lost backend.
   */
  failure(reason: unknown): ApiError {
    return this.stopError() ?? (reason instanceof ApiError ? reason : upstreamLost())
  }

  #watch = (): void => {
    const now = Date.now()
    const next = this.#nextDeadline()
    if (next === null) return
    const [reason, dueAt] = next
    if (now < dueAt) {
      this.#timer = setTimeout(this.#watch, dueAt - now)
      return
    }
    if (reason === 'idle_timeout' || !this.#judge) return this.stop(reason)
    this.#judgeMiss(reason === 'headers_timeout' ? 'headers' : 'first_event', reason)
    this.#watch()
  }

  /**
   * A deadline passed: the call waits on while the verdict is out, and stops only if the stage is
   * still unreached by then, blaming whom the verdict names. A verdict that blames nobody (the
   * gateway lagged, or the backend is busy with earlier requests: src/dispatch/verdict.ts) stops
   * nothing at the headers stage: the answer is coming, and the first-event deadline still bounds
   * the wait. At the first event it stops the call unexplained: no backend is blamed, and the
   * request may fail over.
   */
  #judgeMiss(stage: Stage, reason: StopReason): void {
    this.#judged.add(stage)
    const judge = this.#judge as (stage: Stage) => Promise<Blame>
    // A verdict that cannot be reached is no reason to wait on: the backend is blamed, as before verdicts.
    void judge(stage)
      .catch((): Blame => 'backend')
      .then((blame) => {
        if (this.#reached(stage)) return
        if (blame === 'nobody' && stage === 'headers') return
        this.stop(blame === 'backend' ? reason : blame === 'request' ? 'request_too_slow' : 'deadline_unexplained')
      })
  }

  #reached(stage: Stage): boolean {
    return stage === 'headers' ? this.#headersAt !== 0 || this.#lastEventAt !== 0 : this.#lastEventAt !== 0
  }

  /** The deadline that applies now: headers, then the first event (both from the start), then silence; null: none (being judged). */
  #nextDeadline(): [StopReason, number] | null {
    const { headersMs, firstEventMs, idleMs } = this.#timeouts
    if (this.#lastEventAt !== 0) return ['idle_timeout', this.#lastEventAt + idleMs]
    if (this.#headersAt === 0 && headersMs !== undefined && headersMs < firstEventMs && !this.#judged.has('headers')) {
      return ['headers_timeout', this.#startedAt + headersMs]
    }
    return this.#judged.has('first_event') ? null : ['first_event_timeout', this.#startedAt + firstEventMs]
  }
}

/**
 * The request itself kept the backend from answering: vLLM renders and tokenizes a prompt before it
 * answers, and this one took longer than the deadline while the backend answered other requests
 * (or its health check). A 4xx, so clients do not retry it as it is; not tried on another backend,
 * which would only do the same.
 */
function requestTooSlow(deadlineMs: number | undefined): ApiError {
  return new ApiError(
    400,
    `The backend did not start answering this request within ${deadlineMs} ms while it kept answering others: the delay comes from the request itself (vLLM renders and tokenizes a prompt before it answers; a very long prompt takes longer). It was not retried on another backend. Send a shorter prompt.`,
    { code: 'request_too_slow' },
  )
}

/** The request's end when its client left; nobody reads it: it only ends the handler's await quietly. */
export function clientClosed(): ApiError {
  return new ApiError(400, 'The client closed the request.', { code: 'client_closed_request' })
}

export function upstreamLost(): ApiError {
  return new ApiError(502, 'The connection to the backend was lost mid-stream.', { code: 'upstream_connection_lost' })
}

export function upstreamTruncated(): ApiError {
  return new ApiError(502, 'The backend closed the stream before it finished.', { code: 'upstream_stream_truncated' })
}
