// The verdict on a missed deadline (src/dispatch/verdict.ts) against real emulators: what the
// backend did for newer requests decides first, then its /health, answered by the same API
// server loop as chat.
import { afterEach, describe, expect, it } from 'vitest'
import { judgeMissedDeadline, type MissedDeadline } from '../../src/dispatch/verdict.ts'
import { CircuitBreaker, DEFAULT_CIRCUIT } from '../../src/fleet/circuit.ts'
import type { BackendRecord } from '../../src/fleet/records.ts'
import { fleetUrls } from '../support/fleet.ts'

const backend = (url: string): BackendRecord => ({ id: 'gpu-v', url, weight: 1, maxConcurrency: 8, region: null, state: 'active' })

function missed(url: string, fields: Partial<MissedDeadline> = {}): MissedDeadline {
  return {
    backend: backend(url),
    circuit: new CircuitBreaker(DEFAULT_CIRCUIT),
    stage: 'headers',
    sentAt: 1_000,
    credentials: { apiKey: undefined, secret: () => undefined },
    checkTimeoutMs: 300,
    ...fields,
  }
}

async function lag(url: string, apiServerLagMs: number): Promise<void> {
  const response = await fetch(`${url}/emulator/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiServerLagMs }),
  })
  expect(response.ok).toBe(true)
}

afterEach(async () => {
  await lag(fleetUrls[2], 0)
  // A lagging loop's backlog is handled first in, first out: wait until it has drained.
  await fetch(`${fleetUrls[2]}/health`)
})

describe('the verdict on a missed deadline', () => {
  it('lays it on the request when the backend answered a request sent after it, without asking the backend anything', async () => {
    const circuit = new CircuitBreaker(DEFAULT_CIRCUIT)
    circuit.reached('headers', 1_500)
    // Nothing listens on port 9: a health check would find the backend silent.
    expect(await judgeMissedDeadline(missed('http://127.0.0.1:9', { circuit }))).toBe('request')
  })

  it('only counts newer requests that reached the stage that was missed', async () => {
    const circuit = new CircuitBreaker(DEFAULT_CIRCUIT)
    circuit.reached('headers', 1_500)
    expect(await judgeMissedDeadline(missed('http://127.0.0.1:9', { circuit, stage: 'first_event' }))).toBe('backend')
  })

  it('lays it on the backend when its /health cannot be reached', async () => {
    expect(await judgeMissedDeadline(missed('http://127.0.0.1:9'))).toBe('backend')
  })

  it('lays it on the backend when its /health does not answer within the bound (a lagging or frozen API server)', async () => {
    await lag(fleetUrls[2], 2_000)
    expect(await judgeMissedDeadline(missed(fleetUrls[2], { checkTimeoutMs: 200 }))).toBe('backend')
  })

  it('calls it unexplained when nothing newer was answered but /health answers', async () => {
    expect(await judgeMissedDeadline(missed(fleetUrls[2]))).toBe('unexplained')
  })
})
