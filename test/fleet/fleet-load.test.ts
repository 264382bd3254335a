// The FleetLoad Durable Object against the fleet emulators: it scrapes their /metrics, isolates
// read its view, and the ranking uses it.
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { IDLE_STOP_MS, SCRAPE_INTERVAL_MS, nextScrapeAt, type FleetLoad } from '../../src/durable/fleet-load.ts'
import { LiveStats, liveStatsFor } from '../../src/fleet/live-stats.ts'
import { FLEET_LOAD_NAME, clearFleetLoadCache, fleetLoadView } from '../../src/fleet/load-view.ts'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { rankBackends } from '../../src/fleet/select.ts'
import { readConfig } from '../../src/config.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetStats, fleetUrls, prepareFleet, writeFleet } from '../support/fleet.ts'
import { chatBody } from '../support/worker.ts'

const object = () => env.FLEET_LOAD.get(env.FLEET_LOAD.idFromName(FLEET_LOAD_NAME))
/** vLLM's --api-key of the test emulators (a Worker secret, so not in the generated Env). */
const backendKey = (env as unknown as { BACKEND_API_KEY: string }).BACKEND_API_KEY
const held: AbortController[] = []

/**
 * Requests that hold a sequence slot on backend `index` until released: the emulator's `hang`
 * sends nothing, not even headers, until the client leaves.
 */
async function occupy(index: 0 | 1 | 2, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const controller = new AbortController()
    held.push(controller)
    void fetch(`${fleetUrls[index]}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${backendKey}` },
      body: JSON.stringify(chatBody('[emulator fault=hang]', { stream: true })),
      signal: controller.signal,
    }).catch(() => undefined)
  }
  await vi.waitFor(async () => expect((await fleetStats())[index]?.inFlight).toBe(count), { timeout: 5_000 })
}

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  await prepareFleet()
  // One slot each: two held requests saturate a backend (2 x maxConcurrency).
  await writeFleet([0, 1, 2].map((i) => backendRecord(i as 0 | 1 | 2, { maxConcurrency: 1 })))
  clearFleetCache(env.FLEET)
  clearFleetLoadCache(env)
})

afterEach(async () => {
  for (const controller of held.splice(0)) controller.abort()
  await vi.waitFor(async () => expect((await fleetStats()).every((stats) => stats.inFlight === 0)).toBe(true), { timeout: 5_000 })
})

// The alarm would go on scraping for IDLE_STOP_MS after the last read, past the file's end.
afterAll(async () => {
  await runInDurableObject(object(), (_instance: FleetLoad, state) => state.storage.deleteAlarm())
})

describe('FleetLoad', () => {
  it("scrapes every backend's vLLM gauges from /metrics", async () => {
    await occupy(0, 2)
    const view = await runInDurableObject(object(), (instance: FleetLoad) => instance.scrape())
    expect(Object.keys(view.backends).sort()).toEqual(['gpu-a', 'gpu-b', 'gpu-c'])
    expect(view.backends['gpu-a']).toMatchObject({ running: 2, waiting: 0 })
    expect(view.backends['gpu-b']).toMatchObject({ running: 0, waiting: 0 })
    expect(view.backends['gpu-a']?.kvCacheUsage).toBeGreaterThan(0)
    expect(view.backends['gpu-a']?.scrapedAt).toBeLessThanOrEqual(view.at)
  })

  it('records an unreachable backend as unknown (null counts), not idle', async () => {
    await writeFleet([backendRecord(0), { ...backendRecord(1), id: 'gpu-dead', url: 'http://127.0.0.1:9' }])
    const view = await runInDurableObject(object(), (instance: FleetLoad) => {
      // The object keeps the fleet record as long as an isolate does; the test changes it at once.
      clearFleetCache(env.FLEET)
      return instance.scrape()
    })
    expect(view.backends['gpu-dead']).toMatchObject({ running: null, waiting: null, kvCacheUsage: null })
    expect(view.backends['gpu-a']).toMatchObject({ running: 0, waiting: 0 })
  })

  it('starts its alarm on a read and keeps scraping while read', async () => {
    const stub = object()
    await stub.read()
    expect(await runInDurableObject(stub, (_instance: FleetLoad, state) => state.storage.getAlarm())).not.toBeNull()
    expect(await runDurableObjectAlarm(stub)).toBe(true)
    // The alarm ran one round and, read a moment ago, set the next one.
    expect(await runInDurableObject(stub, (_instance: FleetLoad, state) => state.storage.getAlarm())).not.toBeNull()
    expect((await stub.read())?.backends['gpu-a']).toMatchObject({ running: 0, waiting: 0 })
  })

  it('stops scraping once nobody has read it for a while, so an idle deployment calls no backend', () => {
    expect(nextScrapeAt(10_000, 9_500)).toBe(10_000 + SCRAPE_INTERVAL_MS)
    expect(nextScrapeAt(100_000, 100_000 - IDLE_STOP_MS)).toBeNull()
  })
})

describe('the fleet load view in an isolate', () => {
  it('reaches the ranking: a backend other isolates filled is left out though this isolate sent it nothing', async () => {
    await occupy(0, 2)
    const testEnv = fleetEnv()
    const config = readConfig(testEnv)
    // The first read only starts the object; the isolate asks again after a second.
    await vi.waitFor(
      () => {
        const view = fleetLoadView(testEnv)
        expect(view?.backends['gpu-a']).toMatchObject({ running: 2 })
      },
      { timeout: 8_000, interval: 200 },
    )
    const live = liveStatsFor(config)
    const ranked = rankBackends({
      backends: [0, 1, 2].map((i) => backendRecord(i as 0 | 1 | 2, { maxConcurrency: 1 })),
      health: null,
      stats: (id) => live.of(id),
      prefixKey: null,
      fleetLoad: fleetLoadView(testEnv),
      now: Date.now(),
      options: config.fleet.selection,
    })
    expect(live.of('gpu-a').inFlight).toBe(0)
    expect(ranked.map((c) => c.backend.id)).not.toContain('gpu-a')
    // And the Worker's own route: three requests, none to the full backend.
    for (let i = 0; i < 3; i++) {
      const { response, settled } = await callIn(testEnv, '/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_SECRET}` },
        body: JSON.stringify(chatBody(`[emulator ttft_ms=2 itl_ms=1 reasoning_tokens=1 content_tokens=1] ${i}`)),
      })
      expect(response.status).toBe(200)
      await response.text()
      await settled()
    }
    const [a, b, c] = await fleetStats()
    expect(a?.requests).toBe(2)
    expect((b?.completed ?? 0) + (c?.completed ?? 0)).toBe(3)
  })

  it('carries conversation placements between isolates: a turn one isolate placed is recalled by another after its next read', async () => {
    const testEnv = fleetEnv()
    const [placing, following] = [new LiveStats(), new LiveStats()]
    // Both isolates have read once, so each knows where the log stands.
    following.learnPlacements((await object().exchange(following.takePlacements())).news)
    placing.remember('conversation-1', 'gpu-b')
    fleetLoadView(testEnv, Date.now(), placing)
    await vi.waitFor(async () => {
      following.learnPlacements((await object().exchange(following.takePlacements())).news)
      expect(following.recall('conversation-1')).toBe('gpu-b')
    })
    // And only once: the next read brings nothing new.
    const again = (await object().exchange(following.takePlacements())).news
    expect(again.placements).toEqual([])
  })

  it('never makes a request wait for it: the first call answers null at once and reads in the background', () => {
    const testEnv = fleetEnv()
    expect(fleetLoadView(testEnv)).toBeNull()
    // Within the read interval no second read starts and the answer is still the cached one.
    expect(fleetLoadView(testEnv)).toBeNull()
  })
})
