// Watching what the gateway records: the batches the telemetry aggregator receives, and an admin key.
import { env } from 'cloudflare:workers'
import { vi } from 'vitest'
import { TelemetryAggregator } from '../../src/durable/telemetry-aggregator.ts'
import type { TelemetryBatch } from '../../src/telemetry/batch.ts'
import type { RequestRecord } from '../../src/telemetry/record.ts'
import { randomSecret, seedKey } from './keys.ts'

/** Records the aggregator receives from now on (the Durable Object runs in the tests' isolate). */
export function captureRecords(): { of(keyId: string): RequestRecord[]; batches: TelemetryBatch[]; stop(): void } {
  const batches: TelemetryBatch[] = []
  const original = TelemetryAggregator.prototype.ingest
  const spy = vi.spyOn(TelemetryAggregator.prototype, 'ingest').mockImplementation(function (this: TelemetryAggregator, batch) {
    batches.push(structuredClone(batch))
    return original.call(this, batch)
  })
  return {
    batches,
    of: (keyId) => batches.flatMap((batch) => batch.records).filter((record) => record.keyId === keyId),
    stop: () => spy.mockRestore(),
  }
}

/** Waits until the aggregator has received exactly `count` records of the key, and returns them. */
export async function recordsOf(capture: ReturnType<typeof captureRecords>, keyId: string, count = 1): Promise<RequestRecord[]> {
  await vi.waitFor(
    () => {
      if (capture.of(keyId).length < count) throw new Error(`${capture.of(keyId).length} of ${count} records so far`)
    },
    { timeout: 5000, interval: 20 },
  )
  return capture.of(keyId)
}

export function aggregator() {
  return env.TELEMETRY.get(env.TELEMETRY.idFromName('global'))
}

let adminSecret: string | null = null

export async function adminAuth(): Promise<Record<string, string>> {
  if (adminSecret === null) {
    adminSecret = randomSecret()
    await seedKey(env.KEYS, adminSecret, { scopes: ['admin'] })
  }
  return { authorization: `Bearer ${adminSecret}` }
}

/** Sends the isolate's pending batch and writes every changed bucket to KV, waiting out the 1 s rule. */
export async function flushLatency(): Promise<void> {
  // The isolate's batch goes after TELEMETRY_BATCH_MS (20 ms in tests).
  await new Promise((resolve) => setTimeout(resolve, 60))
  for (let i = 0; i < 10; i++) {
    const { nextAt } = await aggregator().flush()
    if (nextAt === null) return
    await new Promise((resolve) => setTimeout(resolve, Math.max(10, nextAt - Date.now() + 5)))
  }
  throw new Error('the aggregator still had buckets to write after 10 flushes')
}
