// Every Durable Object class wrangler.toml binds. Each Worker entry (src/index.ts and the
// benchmark's bench/bare-worker.ts and bench/distance-worker.ts) re-exports this one list, so a
// new class added here reaches every bundle: wrangler refuses one that misses a bound class.
export { KeyLimiter } from './key-limiter.ts'
export { TelemetryAggregator } from './telemetry-aggregator.ts'
export { StreamSession } from './stream-session.ts'
export { DashboardLink } from './dashboard-link.ts'
export { BackendSlots } from './backend-slots.ts'
export { ResponseStore } from './response-store.ts'
