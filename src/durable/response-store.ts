import { DurableObject } from 'cloudflare:workers'
import type { WorkerEnv } from '../bindings.ts'
import type { ConversationItem } from '../responses/items.ts'

/** A stored response: the response object as the client received it, and its context's item ids. */
export interface StoredTurn {
  /** The response object (its `output` items are also stored one by one, for item_reference). */
  response: { id: string; output: ConversationItem[] } & Record<string, unknown>
  /** Every item the model was given, in order: the continued response's context and output, then this request's input. */
  inputIds: string[]
  /** The items this object does not hold yet: the request's own input items and the response's output. */
  items: ConversationItem[]
  /** When the response is deleted (ms since the epoch). */
  expiresAt: number
}

/** What a continued turn reads: the continued response's context then output, and the referenced items (null: not found). */
export interface ContextRead {
  previous: ConversationItem[] | null
  items: (ConversationItem | null)[]
}

/**
 * One conversation of one API key: its stored responses and their items (one instance per key and
 * conversation, `idFromName`; src/responses/store.ts names it). A Durable Object because the next
 * turn, often sent within a second and possibly from another location, must find what the last
 * one stored: there is one instance in the world per name and its storage is strongly consistent.
 * KV would let that turn miss the write for up to a minute. Naming it by key makes another key's
 * request reach another, empty object: it finds nothing, and cannot tell "someone else's" from
 * "never existed". One object per conversation rather than per key spreads a key's traffic and
 * storage (an object holds at most 10 GB) and keeps a conversation's turns in one place, read in
 * one round trip.
 *
 * An item is stored once however many responses' contexts hold it; a response row lists its
 * context's item ids. Expired or deleted responses go, then every item no response holds; the
 * last response going deletes the object's storage altogether.
 */
export class ResponseStore extends DurableObject<WorkerEnv> {
  /**
   * Whether the tables exist. Created by the first save only: a read that finds nothing (another
   * key's id, a deleted conversation) must not leave storage behind.
   */
  #tables: boolean | null = null

  /** The continued response's context and output (null if it is not here, or expired), and the items asked for. */
  read(previousId: string | null, itemIds: string[]): ContextRead {
    const previous = previousId === null ? null : this.#context(previousId)
    return { previous, items: itemIds.map((id) => this.#item(id)) }
  }

  async save(turn: StoredTurn): Promise<void> {
    const sql = this.ctx.storage.sql
    if (!this.#hasTables()) {
      sql.exec(`CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, body TEXT NOT NULL)`)
      sql.exec(
        `CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, body TEXT NOT NULL, input_ids TEXT NOT NULL, expires_at INTEGER NOT NULL)`,
      )
      this.#tables = true
    }
    for (const item of turn.items) sql.exec(`INSERT OR IGNORE INTO items (id, body) VALUES (?, ?)`, item.id, JSON.stringify(item))
    sql.exec(
      `INSERT OR REPLACE INTO responses (id, body, input_ids, expires_at) VALUES (?, ?, ?, ?)`,
      turn.response.id,
      JSON.stringify(turn.response),
      JSON.stringify(turn.inputIds),
      turn.expiresAt,
    )
    const alarm = await this.ctx.storage.getAlarm()
    if (alarm === null || alarm > turn.expiresAt) await this.ctx.storage.setAlarm(turn.expiresAt)
  }

  /** The response object, or null (never stored, deleted or expired). */
  response(id: string): Record<string, unknown> | null {
    const row = this.#row(id)
    return row ? (JSON.parse(row.body) as Record<string, unknown>) : null
  }

  /** The items the model was given for a response, in order, or null (no such response). */
  inputItems(id: string): ConversationItem[] | null {
    const row = this.#row(id)
    return row ? this.#inputOf(row) : null
  }

  /** Deletes a response (true) or finds none (false); the items no other response holds go with it. */
  async remove(id: string): Promise<boolean> {
    if (!this.#row(id)) return false
    this.ctx.storage.sql.exec(`DELETE FROM responses WHERE id = ?`, id)
    await this.#collect()
    return true
  }

  /** Retention: the expired responses go, then the items no response holds. */
  override async alarm(): Promise<void> {
    if (!this.#hasTables()) return
    this.ctx.storage.sql.exec(`DELETE FROM responses WHERE expires_at <= ?`, Date.now())
    await this.#collect()
  }

  #hasTables(): boolean {
    this.#tables ??=
      this.ctx.storage.sql.exec(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'responses'`).toArray().length > 0
    return this.#tables
  }

  #row(id: string): { body: string; input_ids: string } | null {
    if (!this.#hasTables()) return null
    const rows = this.ctx.storage.sql
      .exec<{ body: string; input_ids: string }>(`SELECT body, input_ids FROM responses WHERE id = ? AND expires_at > ?`, id, Date.now())
      .toArray()
    return rows[0] ?? null
  }

  #item(id: string): ConversationItem | null {
    if (!this.#hasTables()) return null
    const rows = this.ctx.storage.sql.exec<{ body: string }>(`SELECT body FROM items WHERE id = ?`, id).toArray()
    return rows[0] ? (JSON.parse(rows[0].body) as ConversationItem) : null
  }

  #context(id: string): ConversationItem[] | null {
    const row = this.#row(id)
    if (!row) return null
    const response = JSON.parse(row.body) as StoredTurn['response']
    return [...this.#inputOf(row), ...response.output]
  }

  /** A response row's input items, in order. */
  #inputOf(row: { input_ids: string }): ConversationItem[] {
    return (JSON.parse(row.input_ids) as string[]).map((itemId) => this.#item(itemId)).filter((item) => item !== null)
  }

  /** Deletes the items no response holds; with no response left, everything (the alarm included). */
  async #collect(): Promise<void> {
    const sql = this.ctx.storage.sql
    const rows = sql
      .exec<{ body: string; input_ids: string; expires_at: number }>(`SELECT body, input_ids, expires_at FROM responses`)
      .toArray()
    if (rows.length === 0) {
      this.#tables = false
      await this.ctx.storage.deleteAlarm()
      return this.ctx.storage.deleteAll()
    }
    const held = new Set<string>()
    for (const row of rows) {
      for (const id of JSON.parse(row.input_ids) as string[]) held.add(id)
      for (const item of (JSON.parse(row.body) as StoredTurn['response']).output) held.add(item.id)
    }
    const stored = sql.exec<{ id: string }>(`SELECT id FROM items`).toArray()
    for (const { id } of stored) if (!held.has(id)) sql.exec(`DELETE FROM items WHERE id = ?`, id)
    await this.ctx.storage.setAlarm(Math.min(...rows.map((row) => row.expires_at)))
  }
}
