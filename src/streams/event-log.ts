import { isFinal, type StreamEvent, type StreamEventName } from './events.ts'

/** How often new events are written to storage while a generation runs. */
export const SAVE_MS = 250

// Storage layout: `e:<id of the batch's first event, 9 digits>` -> the batch's events, in order,
// so one prefix list reads the whole stream back in order.
const BATCH = 'e:'

/**
 * A session's events, in memory (what every reconnect replays from while the object lives) and
 * in the object's storage (what a finished session is replayed from after the object was
 * evicted). Ids are 1, 2, 3, ...: event N is at index N - 1.
 *
 * Events are written in one batch per SAVE_MS, not one write per token, and without waiting for
 * the write to be confirmed (`allowUnconfirmed`): a confirmed write holds every outgoing message
 * of the object, the next token's frames included, until storage has it. What a crash can lose
 * is the last SAVE_MS of a generation that the crash ends anyway; `save` at the end is confirmed.
 */
export class EventLog {
  #events: StreamEvent[]
  #unsaved: StreamEvent[] = []
  #timer: ReturnType<typeof setTimeout> | null = null
  #storage: DurableObjectStorage

  constructor(storage: DurableObjectStorage, events: StreamEvent[] = []) {
    this.#storage = storage
    this.#events = events
  }

  static load(storage: DurableObjectStorage): EventLog {
    const events: StreamEvent[] = []
    for (const [, batch] of storage.kv.list<StreamEvent[]>({ prefix: BATCH })) events.push(...batch)
    return new EventLog(storage, events)
  }

  get lastId(): number {
    return this.#events.length
  }

  /** The ending event (done or error), once there is one. */
  get final(): StreamEvent | null {
    const last = this.#events.at(-1)
    return last && isFinal(last) ? last : null
  }

  append(name: StreamEventName, data: string): StreamEvent {
    const event = { id: this.#events.length + 1, name, data }
    this.#events.push(event)
    this.#unsaved.push(event)
    this.#timer ??= setTimeout(() => void this.#write(true), SAVE_MS)
    return event
  }

  /** The events after `id`, in order. */
  since(id: number): StreamEvent[] {
    return this.#events.slice(Math.max(0, id))
  }

  /** Writes what is not saved yet and waits until storage has it. */
  async save(): Promise<void> {
    await this.#write(false)
  }

  async #write(allowUnconfirmed: boolean): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    const batch = this.#unsaved
    if (batch.length === 0) return
    this.#unsaved = []
    const key = `${BATCH}${String((batch[0] as StreamEvent).id).padStart(9, '0')}`
    try {
      await this.#storage.put(key, batch, { allowUnconfirmed })
    } catch (error) {
      // The events are still in memory; only a replay after eviction would miss them.
      console.error(
        JSON.stringify({
          event: 'stream_events_save_failed',
          events: batch.length,
          error: error instanceof Error ? error.name : 'unknown',
        }),
      )
    }
  }
}
