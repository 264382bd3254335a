// Runs before each Worker test file: one chat-scoped key, and a clean slate of what files leave
// behind. The worker project runs its files one after another in one runtime (isolate: false in
// test/vitest.config.ts), so storage and the isolate's caches outlive a file: a fleet record an
// earlier file wrote would route this file's requests to the fleet emulators.
import { env } from 'cloudflare:workers'
import { beforeAll, vi } from 'vitest'
import { clearKeyCache } from '../../src/auth/key-store.ts'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { TEST_KEY_ID, TEST_SECRET, seedKey } from './keys.ts'
import { emulatorStats } from './worker.ts'

async function emptyNamespace(kv: KVNamespace): Promise<void> {
  let cursor: string | undefined
  do {
    const page: KVNamespaceListResult<unknown> = await kv.list(cursor === undefined ? {} : { cursor })
    await Promise.all(page.keys.map((key) => kv.delete(key.name)))
    cursor = page.list_complete ? undefined : page.cursor
  } while (cursor !== undefined)
}

beforeAll(async () => {
  // An earlier file's streams may still be ending (a client abort, a hedge's loser): tests that
  // count the shared emulator's requests start once it has none in flight.
  await vi.waitFor(
    async () => {
      if ((await emulatorStats()).inFlight !== 0) throw new Error('the shared emulator still has requests in flight')
    },
    { timeout: 15_000, interval: 20 },
  )
  // LATENCY stays: the TelemetryAggregator, which outlives files too, writes it from the buckets
  // it holds, and a test reads it against what the aggregator already wrote (kv-writes.test.ts).
  await emptyNamespace(env.FLEET)
  clearFleetCache(env.FLEET)
  clearKeyCache()
  await seedKey(env.KEYS, TEST_SECRET, { id: TEST_KEY_ID, name: 'worker tests' })
})
