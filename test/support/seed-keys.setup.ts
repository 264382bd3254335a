// Runs before each Worker test file (storage is isolated per file): one chat-scoped key.
import { env } from 'cloudflare:workers'
import { beforeAll } from 'vitest'
import { TEST_KEY_ID, TEST_SECRET, seedKey } from './keys.ts'

beforeAll(async () => {
  await seedKey(env.KEYS, TEST_SECRET, { id: TEST_KEY_ID, name: 'worker tests' })
})
