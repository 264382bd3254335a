// Hedging a queued request: when the slot ledger's answer to a request's claim shows its backend
// holding more requests than it has sequence slots, the request waits in vLLM's queue behind whole
// generations, and a second backend with a free slot is asked at once; whichever sends a data
// event first wins (see hedge-race.ts for the race, docs/fleet.md for the policy). A hedge on a
// deadline timer was measured and removed: it paid nothing beyond the noise (docs/fleet-experiments.md).

/** Which attempt of a hedged request sent the first data event. */
export type HedgeWinner = 'primary' | 'hedge'

/** What the engine needs to hedge a source: when, how to start the hedge, and what to tell. */
export interface HedgePlan<S> {
  /** Resolves true when `source` is known to wait in its backend's queue: the time to hedge. */
  queued(source: S): Promise<boolean>
  /** Opens the hedge: another accepted source, or null when none may start now (no free slot, none left, the client left). */
  start(): Promise<S | null>
  /** A raced source that failed while the other runs on: its backend's failure, not the request's. */
  dropped(source: S, error: unknown): void
  /** The race is decided: `winner` sent the first data event (the loser is already stopped). */
  won(winner: S, by: HedgeWinner): void
}
