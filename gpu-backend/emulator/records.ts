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
  /** For generation requests vLLM accepted: its request id, SamplingParams and ignored fields (v1.ts). */
  vllm?: { requestId: string; samplingParams: unknown; ignoredFields: string[] }
}

/** The last `limit` requests under /v1, with the Authorization value redacted. */
export class RequestLog {
  readonly limit: number
  entries: RecordedRequest[] = []

  constructor(limit: number) {
    this.limit = limit
  }

  add(method: string, path: string, headers: IncomingHttpHeaders, body: unknown): RecordedRequest {
    const copy: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) continue
      copy[name] = name === 'authorization' ? '<redacted>' : value
    }
    const entry: RecordedRequest = { method, path, headers: copy, body }
    this.entries.push(entry)
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit)
    return entry
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

/**
 * The prompt prefixes one backend still holds, bounded by tokens, least recently used evicted
 * first. Each entry holds only the tokens it adds to its parent prefix, as vLLM's hashed blocks
 * are shared along a chain, and a hit must be a chain from the start of the prompt. Longer
 * prefixes are refreshed before shorter ones, so a conversation loses its tail before the system
 * prompt other conversations share (vLLM frees a request's blocks tail first for the same reason).
 */
export class PrefixCache {
  readonly capacity: () => number
  /** Prefix key to the tokens it adds over its parent, least recently used first. */
  readonly entries = new Map<string, number>()
  /** Tokens held: the sum of the entries. */
  held = 0

  constructor(capacity: () => number) {
    this.capacity = capacity
  }

  /** Tokens of the longest cached prefix of the prompt; then remembers all of its prefixes. */
  lookupAndStore(prefixes: readonly PromptPrefix[]): number {
    let hit = 0
    for (const prefix of prefixes) {
      if (!this.entries.has(prefix.key)) break
      hit = prefix.tokens
    }
    for (let index = prefixes.length - 1; index >= 0; index--) {
      const prefix = prefixes[index]
      if (prefix === undefined) continue
      this.remove(prefix.key) // re-insert: most recently used last
      const own = Math.max(0, prefix.tokens - (prefixes[index - 1]?.tokens ?? 0))
      this.entries.set(prefix.key, own)
      this.held += own
    }
    this.evict()
    return hit
  }

  /** Drops least recently used prefixes until the cache fits its capacity. */
  evict(): void {
    for (const key of this.entries.keys()) {
      if (this.held <= this.capacity()) return
      this.remove(key)
    }
  }

  clear(): void {
    this.entries.clear()
    this.held = 0
  }

  private remove(key: string): void {
    this.held -= this.entries.get(key) ?? 0
    this.entries.delete(key)
  }
}
