// A per-isolate cache of one value read from KV, served stale while it is re-read in the
// background: past its TTL a warm isolate answers from memory at once and refreshes after the
// response (waitUntil), so a KV read sits on the hot path only of a cold isolate, or of one idle
// past the stale bound. Used for the fleet record and health snapshot and the fleet-wide TTFT view.

/** Runs work after the response (the request's waitUntil); absent, a stale value is not served. */
export type Background = (work: Promise<unknown>) => void

interface Cell<T> {
  value: T
  readAt: number
  /**
   * The TTL and stale bound of whoever read it: a value is never served older than either its
   * reader or the caller allows (an isolate's configurations, and a Durable Object, share a cache).
   */
  readerTtlMs: number
  readerStaleMaxMs: number
  refreshing: boolean
}

export interface StaleRead {
  ttlMs: number
  /** How long past its TTL a value may still be served while it is re-read. */
  staleMaxMs: number
  background?: Background
  now: number
}

export class StaleCache<K extends object, T> {
  #cells = new WeakMap<K, Cell<T>>()
  #load: (owner: K, now: number) => Promise<T>

  constructor(load: (owner: K, now: number) => Promise<T>) {
    this.#load = load
  }

  async get(owner: K, read: StaleRead): Promise<T> {
    const cell = this.#cells.get(owner)
    const age = cell ? read.now - cell.readAt : Infinity
    const ttlMs = Math.min(read.ttlMs, cell?.readerTtlMs ?? Infinity)
    if (cell && age < ttlMs) return cell.value
    const staleMaxMs = Math.min(read.staleMaxMs, cell?.readerStaleMaxMs ?? Infinity)
    if (cell && read.background && staleMaxMs > 0 && age < ttlMs + staleMaxMs) {
      if (!cell.refreshing) {
        cell.refreshing = true
        // A failed refresh keeps the stale value (within its bound); a later request tries again.
        read.background(this.#refresh(owner, read).finally(() => (cell.refreshing = false)))
      }
      return cell.value
    }
    return this.#refresh(owner, read)
  }

  clear(owner: K): void {
    this.#cells.delete(owner)
  }

  async #refresh(owner: K, read: StaleRead): Promise<T> {
    const value = await this.#load(owner, read.now)
    this.#cells.set(owner, { value, readAt: read.now, readerTtlMs: read.ttlMs, readerStaleMaxMs: read.staleMaxMs, refreshing: false })
    return value
  }
}
