import { DurableObject } from 'cloudflare:workers'
import { readConfig } from '../config.ts'
import type { WorkerEnv } from '../env.ts'
import { backendHeaders, credentialsFrom, type BackendCredentials } from '../fleet/access.ts'
import type { BackendLoad, FleetLoadAnswer, FleetLoadView } from '../fleet/load-view.ts'
import { PlacementLog, type PlacementExchange } from '../fleet/placements.ts'
import { readLoad } from '../fleet/probe.ts'
import type { BackendRecord } from '../fleet/records.ts'
import { loadFleet } from '../fleet/registry.ts'

/** Scrape cadence while someone reads the view. */
export const SCRAPE_INTERVAL_MS = 1_000
/** With no read for this long the alarm stops: an idle deployment makes no backend calls. */
export const IDLE_STOP_MS = 10_000
/** A scheduled scrape this late did not happen. */
const ALARM_STALLED_MS = 5_000
/** One backend's /metrics must answer within this, so a round fits in the cadence. */
const SCRAPE_TIMEOUT_MS = 800

/**
 * The fleet-wide load view (one instance, named "global"). While isolates read it, its alarm
 * scrapes every backend's /metrics once a second (vLLM's running and waiting requests and KV-cache
 * usage) with the same credentials as every other backend call, and keeps the last round in
 * memory: losing it on eviction costs one round. Reads are answered from memory at once; the first
 * read after an idle spell starts the alarm again and gets the old (so soon unknown) view or null.
 */
export class FleetLoad extends DurableObject<WorkerEnv> {
  #view: FleetLoadView | null = null
  /** In memory only: a placement is a cache hint, and an evicted object's isolates refill it in a second. */
  #placements = new PlacementLog()
  #lastReadAt = 0
  #alarmAt: number | null = null

  constructor(ctx: DurableObjectState, env: WorkerEnv) {
    super(ctx, env)
    void ctx.blockConcurrencyWhile(async () => {
      this.#alarmAt = await ctx.storage.getAlarm()
    })
  }

  async read(): Promise<FleetLoadView | null> {
    const now = Date.now()
    this.#lastReadAt = now
    // An alarm long overdue means the loop died (its retries ran out): start it again.
    if (this.#alarmAt === null || now - this.#alarmAt > ALARM_STALLED_MS) {
      this.#alarmAt = now
      await this.ctx.storage.setAlarm(now)
    }
    return this.#view
  }

  /** A read that also swaps conversation placements between isolates (src/fleet/placements.ts). */
  async exchange(request: PlacementExchange): Promise<FleetLoadAnswer> {
    const news = this.#placements.exchange(request)
    return { view: await this.read(), news }
  }

  /** One scrape round now (the alarm; tests call it to skip the wait). */
  async scrape(): Promise<FleetLoadView> {
    const config = readConfig(this.env)
    const fleet = await loadFleet(this.env.FLEET, config.fleet.fallback, config.fleet.cacheTtlMs)
    const credentials = credentialsFrom(this.env, config.backendApiKey)
    const entries = await Promise.all(fleet.backends.map(async (backend) => [backend.id, await scrapeOne(backend, credentials)] as const))
    this.#view = { at: Date.now(), backends: Object.fromEntries(entries) }
    return this.#view
  }

  override async alarm(): Promise<void> {
    this.#alarmAt = null
    try {
      await this.scrape()
    } catch (error) {
      // A misconfigured deployment or an unreadable fleet: the view just ages into unknown.
      console.error(JSON.stringify({ event: 'fleet_load_scrape_failed', error: error instanceof Error ? error.name : 'unknown' }))
    }
    this.#alarmAt = nextScrapeAt(Date.now(), this.#lastReadAt)
    if (this.#alarmAt !== null) await this.ctx.storage.setAlarm(this.#alarmAt)
  }
}

/** When the next scrape is due after one ending `now`: in a second while read, never once idle. */
export function nextScrapeAt(now: number, lastReadAt: number): number | null {
  return now - lastReadAt >= IDLE_STOP_MS ? null : now + SCRAPE_INTERVAL_MS
}

async function scrapeOne(backend: BackendRecord, credentials: BackendCredentials): Promise<BackendLoad> {
  const scrapedAt = Date.now()
  let headers: Record<string, string>
  try {
    headers = backendHeaders(backend, credentials)
  } catch {
    // Missing Access secrets: the chat path reports them; here the backend is simply unknown.
    return { running: null, waiting: null, kvCacheUsage: null, scrapedAt }
  }
  return { ...(await readLoad(backend, headers, SCRAPE_TIMEOUT_MS)), scrapedAt }
}
