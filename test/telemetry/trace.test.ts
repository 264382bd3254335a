import { afterEach, describe, expect, it, vi } from 'vitest'
import type { RequestRecord } from '../../src/telemetry/record.ts'
import { RequestTrace } from '../../src/telemetry/trace.ts'

const T0 = Date.UTC(2026, 10, 22, 10, 0, 0)

/** A trace whose clock is set by hand: `at(ms)` moves it to T0 + ms. */
function tracedRequest(): { trace: RequestTrace; at(ms: number): void; records: RequestRecord[] } {
  const records: RequestRecord[] = []
  const clock = vi.spyOn(Date, 'now').mockReturnValue(T0)
  const trace = new RequestTrace({ model: 'm', keyId: 'key_1' }, (record) => records.push(record), T0)
  return { trace, records, at: (ms) => void clock.mockReturnValue(T0 + ms) }
}

afterEach(() => {
  vi.restoreAllMocks()
})

describe('request trace', () => {
  it('keeps a 200 ms edge wait apart: out of the backend TTFT, in the client TTFT and the headers time', () => {
    const { trace, at, records } = tracedRequest()
    at(200)
    trace.waitedAtEdge(200)
    trace.attemptStarted('b1')
    at(230)
    trace.headersReady()
    at(240)
    trace.firstTokenArrived()
    at(245)
    trace.firstTokenDelivered()
    const record = trace.finish('done', 200, T0 + 300)
    expect(record).toMatchObject({ edgeWaitMs: 200, ttftBackendMs: 40, ttftClientMs: 245, headersMs: 230, totalMs: 300, backend: 'b1' })
    expect(records).toEqual([record])
  })

  it('records no edge wait for a request that did not wait', () => {
    const { trace, at } = tracedRequest()
    trace.attemptStarted('b1')
    at(40)
    trace.firstTokenArrived()
    trace.firstTokenDelivered()
    expect(trace.finish('done', 200, T0 + 100)).toMatchObject({ edgeWaitMs: 0, ttftBackendMs: 40, ttftClientMs: 40 })
  })

  it('adds up edge waits told twice, and ignores a negative or non-finite one', () => {
    const { trace, at } = tracedRequest()
    trace.waitedAtEdge(120)
    trace.waitedAtEdge(80)
    trace.waitedAtEdge(-5)
    trace.waitedAtEdge(Number.NaN)
    trace.attemptStarted('b1')
    at(250)
    trace.firstTokenArrived()
    trace.firstTokenDelivered()
    expect(trace.finish('done', 200, T0 + 300)).toMatchObject({ edgeWaitMs: 200, ttftBackendMs: 50, ttftClientMs: 250 })
  })

  it('keeps the wait of a request refused after waiting, with no first token', () => {
    const { trace } = tracedRequest()
    trace.waitedAtEdge(1500)
    expect(trace.finish('refused', 503, T0 + 1500)).toMatchObject({
      outcome: 'refused',
      backend: null,
      edgeWaitMs: 1500,
      ttftBackendMs: null,
      ttftClientMs: null,
      headersMs: 1500,
    })
  })
})
