// The verdict on a missed deadline (src/dispatch/verdict.ts) against real emulators: what the
// backend did for newer requests decides first, then its /health, answered by the same API
// server loop as chat.
import { afterEach, describe, expect, it } from 'vitest'
import { GATEWAY_LAG_TOLERANCE_MS, judgeMissedDeadline, type LagMeter, type MissedDeadline } from '../../src/dispatch/verdict.ts'
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

/** The gateway's own event loop, as the verdict measures it: on time, or this many ms behind. */
const gatewayLate =
  (ms: number): LagMeter =>
  () => ({ lateBy: () => Promise.resolve(ms) })

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
    expect(await judgeMissedDeadline(missed(fleetUrls[2], { checkTimeoutMs: 200 }), gatewayLate(0))).toBe('backend')
  })

  it("blames nobody when the health check timed out while the gateway's own timers ran late: the answer may be unread in its own queue", async () => {
    await lag(fleetUrls[2], 2_000)
    const late = gatewayLate(GATEWAY_LAG_TOLERANCE_MS + 1)
    expect(await judgeMissedDeadline(missed(fleetUrls[2], { checkTimeoutMs: 200 }), late)).toBe('nobody')
  })

  it('blames nobody when /health is slow but the backend answered an older request since this one was sent: busy, not frozen', async () => {
    await lag(fleetUrls[2], 2_000)
    const circuit = new CircuitBreaker(DEFAULT_CIRCUIT)
    // Sent at 500, before the one that missed (1,000); its headers came just now.
    circuit.reached('headers', 500, 1_200)
    expect(await judgeMissedDeadline(missed(fleetUrls[2], { circuit, checkTimeoutMs: 200 }), gatewayLate(0))).toBe('nobody')
  })

  it('lays it on the backend when /health is silent and its last answer came before this request was sent', async () => {
    await lag(fleetUrls[2], 2_000)
    const circuit = new CircuitBreaker(DEFAULT_CIRCUIT)
    circuit.reached('headers', 500, 900)
    expect(await judgeMissedDeadline(missed(fleetUrls[2], { circuit, checkTimeoutMs: 200 }), gatewayLate(0))).toBe('backend')
  })

  it('still lays it on the backend when its /health cannot be reached, however late the gateway ran (a refusal is an answer)', async () => {
    expect(await judgeMissedDeadline(missed('http://127.0.0.1:9'), gatewayLate(5_000))).toBe('backend')
  })

  it('calls it unexplained when nothing newer was answered but /health answers', async () => {
    expect(await judgeMissedDeadline(missed(fleetUrls[2]))).toBe('unexplained')
  })
})
