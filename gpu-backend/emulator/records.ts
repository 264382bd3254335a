// Bounded memories the control endpoints read: recent requests, SSE send times,
// and the prompt prefixes a real vLLM would still have in its prefix cache.

import type { IncomingHttpHeaders } from 'node:http'
import type { PromptPrefix } from './validate.ts'

/** Drops the oldest entries of an insertion-ordered map beyond `limit`. */
function trim<K, V>(map: Map<K, V>, limit: number): void {
  for (const key of map.keys()) {
    if (map.size <= limit) return
    map.delete(key)
  }
}

export type RecordedRequest = {
  method: string
  path: string
  headers: Record<string, string | string[]>
  body: unknown
}

/** The last `limit` requests under /v1, with the Authorization value redacted. */
export class RequestLog {
  readonly limit: number
  entries: RecordedRequest[] = []

  constructor(limit: number) {
    this.limit = limit
  }

  add(method: string, path: string, headers: IncomingHttpHeaders, body: unknown): void {
    const copy: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) continue
      copy[name] = name === 'authorization' ? '<redacted>' : value
    }
    this.entries.push({ method, path, headers: copy, body })
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit)
  }

  clear(): void {
    this.entries = []
  }
}

/** Send time of every SSE event, per response id, for the last `limit` responses. */
export class EventTimes {
  readonly limit: number
  readonly byId = new Map<string, number[]>()

  constructor(limit: number) {
    this.limit = limit
  }

  record(id: string, time: number): void {
    const times = this.byId.get(id)
    if (times !== undefined) {
      times.push(time)
      return
    }
    this.byId.set(id, [time])
    trim(this.byId, this.limit)
  }

  get(id: string): number[] | undefined {
    return this.byId.get(id)
  }

  clear(): void {
    this.byId.clear()
  }
}

/** Prefixes seen before, so /metrics can report prefix-cache hits the way one backend would. */
export class PrefixCache {
  readonly limit: number
  readonly seen = new Map<string, number>()

  constructor(limit: number) {
    this.limit = limit
  }

  /** Tokens of the longest prefix already cached; then remembers all of them. */
  lookupAndStore(prefixes: readonly PromptPrefix[]): number {
    let hit = 0
    for (const prefix of prefixes) {
      if (this.seen.has(prefix.key)) hit = Math.max(hit, prefix.tokens)
      this.seen.delete(prefix.key) // re-insert: most recently used last
      this.seen.set(prefix.key, prefix.tokens)
    }
    trim(this.seen, this.limit)
    return hit
  }

  clear(): void {
    this.seen.clear()
  }
}
