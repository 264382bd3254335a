import { ChunkReader, type UpstreamChunk } from '../relay/chunk.ts'
import { pumpEvents } from '../relay/events.ts'
import type { GenerationSink } from '../relay/sink.ts'
import type { RelaySource } from './source.ts'
import type { HedgePlan, HedgeWinner } from './hedge.ts'
import { upstreamTruncated } from './upstream-call.ts'

// The reading side of the generation engine: one source read at a time, or, while no data event
// has arrived, two raced (a queued request's hedge). The first source to send a data event is crowned
// and the other is stopped in that same turn, before the chunk reaches the engine, so the sink
// only ever sees the winner's events.

/** Handles one parsed chunk of the crowned (or only) source; false ends the stream (see DataHandler). */
export type ChunkHandler = (chunk: UpstreamChunk, data: string) => boolean

/** The round's last source failed before the race was won by another: `error` is why. */
export class LaneFailure<S> {
  readonly source: S
  readonly error: unknown

  constructor(source: S, error: unknown) {
    this.source = source
    this.error = error
  }
}

interface Lane<S> {
  source: S
  role: HedgeWinner
  reader: ChunkReader
  /** Stopped or settled: nothing it reads counts any more. */
  out: boolean
}

export interface RaceOptions<S> {
  sink: GenerationSink
  plan: HedgePlan<S> | null
  keepChunkUsage: boolean
  onChunk: ChunkHandler
}

/**
 * One round per source the engine hands it (the first, then each failover replacement). A round
 * resolves with the source that read to its end, or rejects with a LaneFailure. A hedge starts at
 * most once per request, only before the sink committed, when the plan says the primary is queued.
 */
export class HedgeRace<S extends RelaySource> {
  #options: RaceOptions<S>
  #lanes: Lane<S>[] = []
  #winner: Lane<S> | null = null
  #round: PromiseWithResolvers<S> | null = null
  /** The round whose hedge was started (at most one per request), and whether it was raced or is opening. */
  #hedgeRound: PromiseWithResolvers<S> | null = null
  #hedgeRaced = false
  /** The hedge is opening; a primary that fails meanwhile waits for it here instead of failing the round. */
  #opening = false
  #orphan: LaneFailure<S> | null = null
  /** The sink committed: its source was told (UpstreamCall.delivered). */
  #delivered = false

  constructor(options: RaceOptions<S>) {
    this.#options = options
  }

  /** Reads `primary` (and, if due, a hedge beside it) until one source ends or the round fails. */
  run(primary: S): Promise<S> {
    const round = Promise.withResolvers<S>()
    this.#round = round
    this.#winner = null
    this.#lanes = []
    this.#launch(primary, 'primary')
    const { plan, sink } = this.#options
    // Known to be queued behind full slots: a second backend is asked while the primary's events
    // flow. Only while its round is on: a late answer about a primary that failed over says nothing
    // about its replacement. Whether a hedge may start is #hedge's to decide.
    if (plan && !this.#hedgeRound && !sink.committed) {
      void plan.queued(primary).then((queued) => {
        if (queued && this.#round === round) void this.#hedge(plan, round)
      })
    }
    return round.promise
  }

  /** The engine is done: no hedge may start any more, and nothing but the winner keeps running. */
  close(): void {
    this.#round = null
    for (const lane of this.#lanes) if (lane !== this.#winner) this.#stop(lane)
  }

  #launch(source: S, role: HedgeWinner): void {
    const { keepChunkUsage, sink } = this.#options
    const lane: Lane<S> = {
      source,
      role,
      reader: new ChunkReader({ keepChunkUsage, reasoningInContent: source.reasoningInContent }),
      out: false,
    }
    this.#lanes.push(lane)
    pumpEvents(source.upstream, (data) => this.#onData(lane, data), {
      signal: source.call.signal,
      afterRead: () => (lane.out ? undefined : sink.afterRead()),
    }).then(
      (end) => this.#settle(lane, end === 'eof' ? upstreamTruncated() : null),
      (error: unknown) => this.#settle(lane, error),
    )
  }

  #onData(lane: Lane<S>, data: string): boolean {
    if (lane.out) return false
    const chunk = lane.reader.read(data)
    lane.source.call.chunkArrived(chunk)
    // An error event is not an answer: it may still fail over, and the other source races on.
    if (chunk.kind !== 'error') this.#crown(lane)
    const more = this.#options.onChunk(chunk, data)
    if (!this.#delivered && this.#options.sink.committed) {
      // From here no failover or hedge can replace this source (both need an uncommitted sink).
      this.#delivered = true
      lane.source.call.delivered()
    }
    return more
  }

  /** `lane` sent the first data event: it is the round's only source from now on. */
  #crown(lane: Lane<S>): void {
    if (this.#winner) return
    this.#winner = lane
    const loser = this.#lanes.find((other) => other !== lane) ?? null
    if (loser) this.#stop(loser)
    this.#lanes = [lane]
    if (this.#hedgeRound === this.#round && this.#hedgeRaced) this.#options.plan?.won(lane.source, lane.role)
  }

  /** A lane's pump ended: `error` null when it read to its end. */
  #settle(lane: Lane<S>, error: unknown): void {
    if (lane.out) return
    lane.out = true
    this.#lanes = this.#lanes.filter((other) => other !== lane)
    const round = this.#round
    if (!round) return
    if (error === null) return round.resolve(lane.source)
    // The other source runs on: this failure is its backend's, not the request's.
    if (this.#lanes.length > 0) return this.#options.plan?.dropped(lane.source, error)
    if (this.#opening) this.#orphan = new LaneFailure(lane.source, error)
    else round.reject(new LaneFailure(lane.source, error))
  }

  async #hedge(plan: HedgePlan<S>, round: PromiseWithResolvers<S>): Promise<void> {
    if (this.#winner || this.#round !== round || this.#options.sink.committed || this.#hedgeRound) return
    this.#hedgeRound = round
    this.#hedgeRaced = true
    this.#opening = true
    const hedge = await plan.start().catch(() => null)
    this.#opening = false
    const orphan = this.#orphan
    this.#orphan = null
    if (!hedge) {
      this.#hedgeRaced = false
      if (orphan && this.#round === round) round.reject(orphan)
      return
    }
    // The primary answered (or the request ended) while the hedge was opening.
    if (this.#winner || this.#round !== round) return hedge.call.stop('relay_failed')
    // The primary failed meanwhile: the hedge takes its place, as a failover would.
    if (orphan) this.#options.plan?.dropped(orphan.source, orphan.error)
    this.#launch(hedge, 'hedge')
  }

  #stop(lane: Lane<S>): void {
    lane.out = true
    lane.source.call.stop('relay_failed')
  }
}
