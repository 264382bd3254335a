// Counters of this isolate's life, for events that must be visible to operators. Plain numbers: an
// isolate handles its requests one turn at a time. The telemetry buffer sends what grew since its
// last batch to the aggregator, which keeps the fleet-wide totals that /metrics shows.

export const proxyCounters = {
  /** Requests refused with 429 by a rate limit. */
  rateLimitRefusals: 0,
  /** Times the rate limiter could not be asked (error or timeout), whatever the failure mode did. */
  rateLimiterUnavailable: 0,
  /** Leases whose settlement failed; the limiter frees them after LEASE_MAX_MS. */
  rateLimiterSettleFailures: 0,
  /** Request records the aggregator never got (it was unreachable and this isolate's queue was full). */
  telemetryDropped: 0,
  /** Chat requests whose backend call started while the limiter decided (speculative admission). */
  speculativeAdmissions: 0,
  /** Of those, the ones the limiter refused: their backend call was aborted, a wasted start. */
  speculativeRefusals: 0,
}

export type CounterName = keyof typeof proxyCounters

export const COUNTER_NAMES = Object.keys(proxyCounters) as CounterName[]

/** Streams this isolate is relaying now (stream sessions included). */
export const liveGauges = { streamsInFlight: 0 }
