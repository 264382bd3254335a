import { DurableObject } from 'cloudflare:workers'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { readConfig } from '../config.ts'
import type { WorkerEnv } from '../env.ts'
import type { EndReason } from '../ending.ts'
import { ApiError, toApiError, type ErrorCode } from '../errors.ts'
import { settleLease, type LeaseRef } from '../limits/admit.ts'
import type { TokenUse } from '../limits/ledger.ts'
import { EventLog } from '../streams/event-log.ts'
import { doneData, errorData, type StreamEvent, type StreamEventName } from '../streams/events.ts'
import { openAttempts, type OpenedAttempts } from '../dispatch/open-attempts.ts'
import { pumpGeneration, type GenerationEnd } from '../streams/generation.ts'
import { toRefusal, type SubscribeInput, type SubscribeResult, type StartResult, type StartSession } from '../streams/rpc.ts'
import type { SessionSettings } from '../streams/settings.ts'
import { SessionTrace } from '../streams/session-trace.ts'
import { Subscriber } from '../streams/subscriber.ts'
import { recordRequest, sendSoon } from '../telemetry/buffer.ts'
import { errorReason, finishWithError } from '../telemetry/context.ts'
import { liveGauges, proxyCounters } from '../telemetry/counters.ts'
import { RequestTrace } from '../telemetry/trace.ts'

/** What a session keeps in storage besides its events (key `meta`). */
interface SessionMeta {
  keyId: string
  lease: LeaseRef | null
  origins: string[]
  settings: SessionSettings
  createdAt: number
  state: 'running' | 'finished'
  endedAt: number | null
  /** Whether the lease has been settled: exactly once, even across a restart of the object. */
  settled: boolean
}

/** Why the session itself stopped its generation (src/ending.ts). */
type StopCause = Extract<EndReason, 'session_abandoned' | 'session_cancelled' | 'session_lifetime'>

/** This instance's running generation (lost if the object restarts: see `#recover`). */
interface Running {
  trace: SessionTrace
  listeners: AbortController
  stopCause: StopCause | null
}

/**
 * One browser stream session (docs/streams.md): it runs the upstream request itself, turns its
 * chunks into numbered events, keeps them (memory and storage) and fans them out to however many
 * EventSource connections the session has. A reconnect replays what came after its Last-Event-ID
 * and then follows live, in the same turn, so nothing is lost or sent twice. The generation goes
 * on while nobody is connected, for at most the grace period; a finished session stays
 * replayable for the retention period, after which its alarm deletes it.
 */
export class StreamSession extends DurableObject<WorkerEnv> {
  #meta: SessionMeta | null
  #log: EventLog | null = null
  #running: Running | null = null
  #subscribers = new Set<Subscriber>()
  /** Events appended since they were last handed to the subscribers. */
  #unsent: StreamEvent[] = []
  #graceTimer: ReturnType<typeof setTimeout> | null = null
  /** The trace, kept past the generation's end for a first token taken late (see SessionTrace). */
  #trace: SessionTrace | null = null

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    this.#meta = ctx.storage.kv.get<SessionMeta>('meta') ?? null
  }

  /** Opens the generation; answers once a backend accepted it, or with why none did. */
  async start(input: StartSession): Promise<StartResult> {
    if (this.#meta)
      return { ok: false, refusal: toRefusal(new ApiError(409, 'The stream session exists already.', { code: 'stream_exists' })) }
    const config = readConfig(this.env)
    const meta: SessionMeta = {
      keyId: input.keyId,
      lease: input.lease,
      origins: input.origins,
      settings: input.settings,
      createdAt: Date.now(),
      state: 'running',
      endedAt: null,
      settled: false,
    }
    this.#meta = meta
    this.#log = new EventLog(this.ctx.storage)
    this.ctx.storage.kv.put('meta', meta)
    await this.ctx.storage.setAlarm(meta.createdAt + meta.settings.maxLifetimeS * 1000)
    const trace = new SessionTrace(this.#newTrace(input.keyId, Math.min(input.startedAt, Date.now())))
    const running: Running = { trace, listeners: new AbortController(), stopCause: null }
    this.#running = running
    this.#trace = trace
    let generation: OpenedAttempts
    try {
      const { body, prefixKey, requestId, gatewayMaxTokens } = input
      generation = await openAttempts({
        env: this.env,
        config,
        body,
        prefixKey,
        requestId,
        gatewayMaxTokens,
        place: input.place,
        signal: running.listeners.signal,
        observer: trace,
        background: (work) => this.ctx.waitUntil(work),
      })
    } catch (error) {
      this.#running = null
      finishWithError(trace.trace, error)
      await this.#settle(null, errorReason(trace.trace, error))
      await this.#erase()
      return { ok: false, refusal: toRefusal(error) }
    }
    trace.trace.headersReady()
    liveGauges.streamsInFlight++
    this.#armGrace()
    const sink = {
      emit: (name: StreamEventName, data: string) => void this.#unsent.push(this.#eventLog().append(name, data)),
      flush: () => this.#flush(),
    }
    const ended = pumpGeneration(generation, sink, trace).catch((error: unknown): GenerationEnd => ({
      reason: 'backend_failed',
      error: toApiError(error),
      backendEvent: null,
      finishReason: null,
      used: null,
    }))
    this.ctx.waitUntil(ended.then((end) => this.#finish(running, end)).catch(logFailure))
    return { ok: true }
  }

  /** A new EventSource connection: the events after `lastEventId`, then the live ones. */
  async subscribe(input: SubscribeInput): Promise<SubscribeResult> {
    const meta = this.#meta
    if (!meta) return refused(410, 'This stream has ended and is no longer kept.', 'stream_expired')
    if (input.origin !== null && input.origin !== input.selfOrigin && !meta.origins.includes(input.origin)) {
      return refused(403, `The origin ${input.origin} may not read this stream.`, 'origin_not_allowed')
    }
    if (meta.state === 'running' && !this.#running) await this.#recover()
    const log = this.#eventLog()
    const finished = meta.state === 'finished'
    if (finished && input.lastEventId >= log.lastId) return { kind: 'ended' }
    if (input.lastEventId > log.lastId)
      return refused(400, `Last-Event-ID ${input.lastEventId} is beyond this stream's last event.`, 'invalid_last_event_id')
    const subscriber = new Subscriber({ ...meta.settings, afterId: input.lastEventId, onGone: (gone) => this.#unsubscribe(gone) })
    subscriber.send(log.since(input.lastEventId), this.#deliveredHook())
    if (finished) {
      subscriber.end()
    } else {
      this.#subscribers.add(subscriber)
      this.#clearGrace()
    }
    return { kind: 'stream', body: subscriber.body }
  }

  /** Stops the generation at once (the page's Stop button); false when it was not running. */
  cancel(): boolean {
    return this.#stop('session_cancelled')
  }

  /** The lifetime cap while running; afterwards, the end of the replay window. */
  override async alarm(): Promise<void> {
    const meta = this.#meta
    if (meta?.state === 'running') {
      if (this.#running) this.#stop('session_lifetime')
      else await this.#recover()
      return
    }
    const expiresAt = meta?.endedAt == null ? 0 : meta.endedAt + meta.settings.retentionS * 1000
    if (Date.now() < expiresAt) await this.ctx.storage.setAlarm(expiresAt)
    else await this.#erase()
  }

  #stop(cause: StopCause): boolean {
    const running = this.#running
    if (!running || running.stopCause) return false
    running.stopCause = cause
    running.listeners.abort(cause)
    return true
  }

  /** The one ending of every generation: final event, listeners closed, lease settled, trace recorded. */
  async #finish(running: Running, end: GenerationEnd): Promise<void> {
    const meta = this.#meta
    if (!meta || this.#running !== running) return
    this.#running = null
    this.#clearGrace()
    liveGauges.streamsInFlight--
    if (end.reason === 'done') {
      this.#unsent.push(this.#eventLog().append('done', doneData(end.finishReason)))
    } else {
      // When the session stopped it, its own reason; otherwise what the backend or relay failed with.
      const error = stopError(running.stopCause, meta.settings) ?? end.error ?? toApiError(null)
      this.#unsent.push(this.#eventLog().append('error', errorData(error)))
    }
    await this.#end(meta)
    await this.#settle(end.used, running.stopCause ?? end.reason)
    await running.trace.finish(running.stopCause ?? end.reason, end.used?.completionTokens ?? 0, meta.settings.graceMs)
  }

  /**
   * This instance has a session marked running but no generation: the object restarted and the
   * upstream request went with it. The session ends with an error event; the lease is settled.
   */
  async #recover(): Promise<void> {
    const meta = this.#meta
    if (!meta || meta.state !== 'running' || this.#running) return
    const error = new ApiError(502, 'The stream session was interrupted; please retry the request.', { code: 'stream_interrupted' })
    this.#unsent.push(this.#eventLog().append('error', errorData(error)))
    await this.#end(meta)
    this.#newTrace(meta.keyId, meta.createdAt).finish('session_interrupted', 200)
    await this.#settle(null, 'session_interrupted')
  }

  /** Sends what is left, closes every connection and keeps the stream for the replay window. */
  async #end(meta: SessionMeta): Promise<void> {
    this.#flush()
    for (const subscriber of this.#subscribers) subscriber.end()
    this.#subscribers.clear()
    meta.state = 'finished'
    meta.endedAt = Date.now()
    this.ctx.storage.kv.put('meta', meta)
    await this.#eventLog().save()
    await this.ctx.storage.setAlarm(meta.endedAt + meta.settings.retentionS * 1000)
  }

  /** Settles the lease once; `reason`, why the generation ended, may pause the key (src/limits/pause.ts). */
  async #settle(used: TokenUse | null, reason: EndReason): Promise<void> {
    const meta = this.#meta
    if (!meta?.lease || meta.settled) return
    meta.settled = true
    this.ctx.storage.kv.put('meta', meta)
    try {
      await settleLease(this.env, meta.lease, used, reason)
    } catch (error) {
      proxyCounters.rateLimiterSettleFailures++
      console.warn(
        JSON.stringify({ event: 'rate_limiter_settle_failed', keyId: meta.keyId, error: error instanceof Error ? error.name : 'unknown' }),
      )
    }
  }

  #flush(): void {
    if (this.#unsent.length === 0) return
    const events = this.#unsent
    this.#unsent = []
    const hook = events.some((event) => event.name === 'reasoning' || event.name === 'content') ? this.#deliveredHook() : undefined
    for (const subscriber of this.#subscribers) subscriber.send(events, hook)
  }

  /** The first token's delivery time is when a connection first took a write carrying it. */
  #deliveredHook(): (() => void) | undefined {
    const trace = this.#trace
    return trace ? () => trace.firstTokenDelivered() : undefined
  }

  #unsubscribe(subscriber: Subscriber): void {
    this.#subscribers.delete(subscriber)
    this.#armGrace()
  }

  /** With nobody connected, the generation has the grace period before it is stopped. */
  #armGrace(): void {
    if (!this.#running || this.#subscribers.size > 0 || this.#graceTimer !== null || !this.#meta) return
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = null
      if (this.#subscribers.size === 0) this.#stop('session_abandoned')
    }, this.#meta.settings.graceMs)
  }

  #clearGrace(): void {
    if (this.#graceTimer !== null) clearTimeout(this.#graceTimer)
    this.#graceTimer = null
  }

  #eventLog(): EventLog {
    this.#log ??= EventLog.load(this.ctx.storage)
    return this.#log
  }

  #newTrace(keyId: string, startedAt: number): RequestTrace {
    const { modelId, telemetry } = readConfig(this.env)
    return new RequestTrace(
      { model: modelId, keyId },
      (record) => {
        recordRequest(record)
        this.ctx.waitUntil(sendSoon(this.env, telemetry.batchMs))
      },
      startedAt,
    )
  }

  async #erase(): Promise<void> {
    await this.ctx.storage.deleteAlarm()
    await this.ctx.storage.deleteAll()
    this.#meta = null
    this.#log = null
  }
}

function stopError(cause: StopCause | null, settings: SessionSettings): ApiError | null {
  if (cause === 'session_abandoned')
    return new ApiError(408, `Nobody listened to this stream for ${settings.graceMs} ms; the generation was stopped.`, {
      code: 'stream_abandoned',
    })
  if (cause === 'session_cancelled') return new ApiError(400, 'The stream was cancelled.', { code: 'stream_cancelled' })
  if (cause === 'session_lifetime')
    return new ApiError(504, `The stream reached its ${settings.maxLifetimeS} s lifetime.`, { code: 'stream_lifetime_exceeded' })
  return null
}

function logFailure(error: unknown): void {
  console.error(JSON.stringify({ event: 'stream_session_failed', error: error instanceof Error ? error.name : 'unknown' }))
}

function refused(status: ContentfulStatusCode, message: string, code: ErrorCode): SubscribeResult {
  return { kind: 'refused', refusal: toRefusal(new ApiError(status, message, { code })) }
}
