import { DurableObject } from 'cloudflare:workers'
import { readTelemetryConfig } from '../config.ts'
import type { WorkerEnv } from '../env.ts'
import type { KeyBoard, KeyReport } from '../limits/key-report.ts'
import { KeyBoardState } from '../telemetry/key-board.ts'
import type { TelemetryBatch } from '../telemetry/batch.ts'
import { TelemetryAggregate, type AggregateStore, type BucketWrite } from '../telemetry/aggregate.ts'
import type { ProxyTotals } from '../telemetry/totals.ts'

export interface MetricsSnapshot {
  totals: ProxyTotals
  streamsInFlight: number
  isolatesReporting: number
  lateRecords: number
  /** The keys nearest their budgets and the flagged keys (absent from snapshots made before the board). */
  keys?: KeyBoard
}

/**
 * The fleet's request telemetry in one place (one instance, named "global"). Isolates send it
 * their finished requests in batches (src/telemetry/buffer.ts); it keeps per-backend aggregates
 * per minute and per hour and the Prometheus totals in its SQLite-backed storage, and its alarm
 * writes changed buckets to the LATENCY namespace every LATENCY_FLUSH_MS, never one key twice
 * within a second. A batch costs one small RPC per isolate and second, so one instance carries a
 * large fleet; sharding by backend would be the next step (docs/observability.md).
 *
 * It also keeps the board of keys (src/telemetry/key-board.ts): the keys nearest their budgets and
 * the flagged ones, from the reports the keys' limiters send.
 */
export class TelemetryAggregator extends DurableObject<WorkerEnv> {
  #aggregate: TelemetryAggregate
  #flushMs: number
  #alarmAt: number | null = null
  /**
   * In memory only, never in storage: every key on the board is reported again within seconds of
   * its next use (src/durable/key-limiter.ts), so what a restart of this object loses is the keys
   * that have gone idle since, which the board's age rule would drop within the hour anyway, and a
   * write per report (one per active key every 10 s or so) would buy nothing more.
   */
  #keys = new KeyBoardState()

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    const config = readTelemetryConfig(env)
    this.#flushMs = config.flushMs
    this.#aggregate = new TelemetryAggregate(syncStore(ctx.storage.kv), config)
    void ctx.blockConcurrencyWhile(async () => {
      this.#alarmAt = await ctx.storage.getAlarm()
    })
  }

  async ingest(batch: TelemetryBatch): Promise<void> {
    this.#aggregate.ingest(batch, Date.now())
    await this.#scheduleFlush(Date.now() + this.#flushMs)
  }

  metrics(): MetricsSnapshot {
    const { streams, isolates } = this.#aggregate.streamsInFlight(Date.now())
    return {
      totals: this.#aggregate.totals,
      streamsInFlight: streams,
      isolatesReporting: isolates,
      lateRecords: this.#aggregate.lateRecords,
      keys: this.#keys.board(Date.now()),
    }
  }

  /** One key's budgets and spike state, from its limiter after a flush (src/limits/key-report.ts). */
  reportKey(report: KeyReport): void {
    this.#keys.report(report, Date.now())
  }

  /** The keys nearest their budgets and the flagged keys (GET /v1/keys/board, the dashboard). */
  keyBoard(): KeyBoard {
    return this.#keys.board(Date.now())
  }

  /**
   * Writes what is due now (the alarm; tests call it to skip the wait). Returns the keys written
   * and when the next write is due, if anything still waits (a key written less than MIN_KEY_WRITE_INTERVAL_MS ago).
   */
  async flush(): Promise<{ written: string[]; nextAt: number | null }> {
    const due = this.#aggregate.takeDue(Date.now())
    const failed: BucketWrite[] = []
    await Promise.all(
      due.map(async (write) => {
        try {
          await this.env.LATENCY.put(write.key, JSON.stringify(write.value), { expirationTtl: write.ttlS })
        } catch (error) {
          failed.push(write)
          console.error(
            JSON.stringify({ event: 'latency_kv_write_failed', key: write.key, error: error instanceof Error ? error.name : 'unknown' }),
          )
        }
      }),
    )
    if (failed.length > 0) this.#aggregate.failed(failed)
    const next = this.#aggregate.nextWriteAt(Date.now())
    if (next !== null) await this.#scheduleFlush(Math.max(next, Date.now() + (failed.length > 0 ? this.#flushMs : 0)))
    return { written: due.filter((write) => !failed.includes(write)).map((write) => write.key), nextAt: next }
  }

  override async alarm(): Promise<void> {
    this.#alarmAt = null
    await this.flush()
  }

  async #scheduleFlush(at: number): Promise<void> {
    if (this.#alarmAt !== null && this.#alarmAt <= at) return
    this.#alarmAt = at
    await this.ctx.storage.setAlarm(at)
  }
}

function syncStore(kv: SyncKvStorage): AggregateStore {
  return {
    get: (key) => kv.get(key),
    put: (key, value) => kv.put(key, value),
    delete: (key) => void kv.delete(key),
    list: (prefix) => kv.list({ prefix }),
  }
}
