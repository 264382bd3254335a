// What a key's limiter (src/durable/key-limiter.ts) tells the rest of the deployment about the
// key's spending: its usage per UTC day (the history), its budgets, and whether its hourly usage
// jumped far above its own recent normal (a leaked key shows here before its budget runs out).
// The limiter writes all of it where the requests are counted; the board in the telemetry
// aggregator (src/durable/telemetry-aggregator.ts) keeps the keys closest to their budgets and the
// flagged ones, so operators never scan every key (docs/keys.md, Budgets and history).

/** A budget's period: the UTC day or the calendar month (UTC). */
export type BudgetPeriod = 'day' | 'month'

/** One UTC day of one key: what its settled requests used. */
export interface UsageDay {
  /** YYYY-MM-DD, UTC. */
  date: string
  requests: number
  promptTokens: number
  completionTokens: number
}

/** One budget of a key, now. */
export interface BudgetState {
  period: BudgetPeriod
  /** Tokens (prompt plus output) the period allows. */
  limit: number
  /** Settled tokens of the period plus what in-flight requests still hold reserved. */
  used: number
  /** max(0, limit - used). */
  remaining: number
  /** Unix ms when the period ends and the budget is whole again. */
  resetsAt: number
}

/** The hourly spike rule's view of a key now (src/limits/usage-spike.ts says the rule). */
export interface SpikeState {
  flagged: boolean
  /** Tokens settled over the last hour. */
  hourTokens: number
  /** The key's recent normal: what the rule compares the last hour with. */
  normalTokens: number
}

/** What a limiter sends the board: one key's budgets and spike state. */
export interface KeyReport {
  keyId: string
  /** Unix ms. */
  at: number
  budgets: BudgetState[]
  spike: SpikeState
}

/** The board's answer: the keys nearest their budgets (highest used/limit first) and the flagged ones. */
export interface KeyBoard {
  closest: KeyReport[]
  flagged: KeyReport[]
}
