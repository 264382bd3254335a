import { DurableObject } from 'cloudflare:workers'
import type { WorkerEnv } from '../env.ts'

/**
 * One dashboard sign-in link (one instance per link id, `idFromName`): it remembers that the link
 * was used, so a link signs in once. A Durable Object rather than KV because there is one
 * instance in the world per name and its storage is strongly consistent: two browsers opening the
 * same link at once, in two locations, reach the same object and exactly one of them wins. KV is
 * eventually consistent across locations (a write can take 60 s or more to be seen elsewhere),
 * so a "used" mark in KV would let a copied link sign in again from another location meanwhile.
 * The mark is deleted by an alarm once the link has expired anyway (the signature then refuses it).
 */
export class DashboardLink extends DurableObject<WorkerEnv> {
  /**
   * True the first time it is called, false ever after. Synchronous storage (SQLite-backed kv):
   * no other call can run between the read and the write.
   */
  async consume(expiresAtMs: number): Promise<boolean> {
    const storage = this.ctx.storage
    if (storage.kv.get<number>('used') !== undefined) return false
    storage.kv.put('used', Date.now())
    // Clean up a minute after expiry: until then a replay must still find the mark.
    await storage.setAlarm(Math.max(expiresAtMs, Date.now()) + 60_000)
    return true
  }

  override async alarm(): Promise<void> {
    await this.ctx.storage.deleteAll()
  }
}
