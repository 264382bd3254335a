import type { CounterName } from './counters.ts'
import type { RequestRecord } from './record.ts'

/** What an isolate sends the aggregator: its finished requests and what its counters grew by. */
export interface TelemetryBatch {
  /** A random id per isolate, so in-flight gauges from many isolates add up. */
  isolate: string
  sentAt: number
  /** The isolate's streams in flight when the batch was sent. */
  streamsInFlight: number
  records: RequestRecord[]
  /** `${route} ${status}` -> responses, for every route. */
  responses: Record<string, number>
  counters: Partial<Record<CounterName, number>>
}
