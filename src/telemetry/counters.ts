// Counters of this isolate's life, for events that must be visible to operators (the /metrics
// endpoint reads them). Plain numbers: an isolate handles its requests one turn at a time.

export const proxyCounters = {
  /** Requests refused with 429 by a rate limit. */
  rateLimitRefusals: 0,
  /** Times the rate limiter could not be asked (error or timeout), whatever the failure mode did. */
  rateLimiterUnavailable: 0,
  /** Leases whose settlement failed; the limiter frees them after LEASE_MAX_MS. */
  rateLimiterSettleFailures: 0,
}
