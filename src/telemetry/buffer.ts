import type { TelemetryAggregator } from '../durable/telemetry-aggregator.ts'
import type { WorkerEnv } from '../env.ts'
import type { TelemetryBatch } from './batch.ts'
import { COUNTER_NAMES, liveGauges, proxyCounters, type CounterName } from './counters.ts'
import type { RequestRecord } from './record.ts'

// The isolate's side of telemetry. Finished requests and response counts gather here and go to
// the aggregator Durable Object in one batch per TELEMETRY_BATCH_MS, not one RPC per request.
// Every request that adds something keeps itself alive (ctx.waitUntil) until a batch holding its
// part has been sent, with its own timer and its own RPC: nothing is shared across requests but
// plain data, so no request does I/O on behalf of another, and a client that left is still counted.

/** A batch is sent at once when it holds this many records. */
const MAX_BATCH_RECORDS = 500
/** Records kept for a retry while the aggregator is unreachable; beyond, they are dropped and counted. */
const MAX_QUEUED_RECORDS = 5000

/** Random, so made at the first batch: workerd allows no random values at module scope. */
let isolate: string | null = null
let records: RequestRecord[] = []
let responses = new Map<string, number>()
const sentCounters = Object.fromEntries(COUNTER_NAMES.map((name) => [name, 0])) as Record<CounterName, number>

/** The one aggregator instance (docs/observability.md says how it would be sharded). */
export function aggregatorOf(env: WorkerEnv): DurableObjectStub<TelemetryAggregator> {
  return env.TELEMETRY.get(env.TELEMETRY.idFromName('global'))
}

export function recordRequest(record: RequestRecord): void {
  records.push(record)
}

export function countResponse(route: string, status: number): void {
  const key = `${route} ${status}`
  responses.set(key, (responses.get(key) ?? 0) + 1)
}

function hasPending(): boolean {
  return records.length > 0 || responses.size > 0 || COUNTER_NAMES.some((name) => proxyCounters[name] !== sentCounters[name])
}

/**
 * Resolves once what is pending now has been sent (by this call or another request's): at once
 * for a full batch, else after `batchMs`. Never rejects; for ctx.waitUntil.
 */
export async function sendSoon(env: WorkerEnv, batchMs: number): Promise<void> {
  if (records.length < MAX_BATCH_RECORDS) await new Promise((resolve) => setTimeout(resolve, batchMs))
  if (hasPending()) await sendPending(env)
}

async function sendPending(env: WorkerEnv): Promise<void> {
  const counters: Partial<Record<CounterName, number>> = {}
  for (const name of COUNTER_NAMES) {
    const grown = proxyCounters[name] - sentCounters[name]
    if (grown !== 0) counters[name] = grown
    sentCounters[name] = proxyCounters[name]
  }
  isolate ??= crypto.randomUUID()
  const batch: TelemetryBatch = {
    isolate,
    sentAt: Date.now(),
    streamsInFlight: liveGauges.streamsInFlight,
    records,
    responses: Object.fromEntries(responses),
    counters,
  }
  records = []
  responses = new Map()
  try {
    await aggregatorOf(env).ingest(batch)
  } catch (error) {
    requeue(batch)
    console.error(
      JSON.stringify({
        event: 'telemetry_send_failed',
        records: batch.records.length,
        error: error instanceof Error ? error.name : 'unknown',
      }),
    )
  }
}

/** Puts an unsent batch back in front of what came since, within MAX_QUEUED_RECORDS. */
function requeue(batch: TelemetryBatch): void {
  const room = Math.max(0, MAX_QUEUED_RECORDS - records.length)
  const kept = batch.records.slice(batch.records.length - room)
  proxyCounters.telemetryDropped += batch.records.length - kept.length
  records = [...kept, ...records]
  for (const [key, count] of Object.entries(batch.responses)) responses.set(key, (responses.get(key) ?? 0) + count)
  for (const [name, grown] of Object.entries(batch.counters) as [CounterName, number][]) sentCounters[name] -= grown
}
