import type { TestProject } from 'vitest/node'
import { startEmulator } from '../../gpu-backend/emulator/server.ts'
import { startFixtureServer } from './fixture-server.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    emulatorUrl: string
    emulatorApiKey: string
    /** Three more emulators for the fleet tests, each configured by its test (/emulator/config). */
    fleetEmulatorUrls: string
    /** Replays captured vLLM responses (test/fixtures/vllm/) for test/relay/vllm-captures.test.ts. */
    fixtureServerUrl: string
  }
}

const API_KEY = 'test-backend-key'

/** One real vLLM emulator on loopback for the Worker tests that run inside workerd. */
export default async function setup(project: TestProject) {
  const emulator = await startEmulator({
    apiKey: API_KEY,
    servedModelName: 'deepseek-r1-distill-qwen-1.5b',
    reasoningParser: 'deepseek_r1',
    ttftMs: 20,
    itlMs: 2,
  })
  const fleet = await Promise.all(
    ['a', 'b', 'c'].map(() =>
      startEmulator({
        apiKey: API_KEY,
        servedModelName: 'deepseek-r1-distill-qwen-1.5b',
        reasoningParser: 'deepseek_r1',
        ttftMs: 5,
        itlMs: 2,
      }),
    ),
  )
  const fixtureServer = await startFixtureServer()
  project.provide('emulatorUrl', emulator.url)
  project.provide('emulatorApiKey', API_KEY)
  project.provide('fleetEmulatorUrls', fleet.map((e) => e.url).join(','))
  project.provide('fixtureServerUrl', fixtureServer.url)
  return async () => {
    await Promise.all([emulator, ...fleet, fixtureServer].map((e) => e.close()))
  }
}
