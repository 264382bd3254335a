import { describe, expect, it } from 'vitest'
import { CircuitBreaker, MAX_EJECTION_MULTIPLIER } from '../../src/fleet/circuit.ts'

const options = {
  consecutiveFailures: 3,
  failureRate: 0.5,
  minOutcomes: 10,
  windowMs: 30_000,
  cooldownMs: 1_000,
  stallMs: 1_000,
}

describe('CircuitBreaker', () => {
  it('ejects after the consecutive-failure limit and keeps the backend out for the cool-down', () => {
    const circuit = new CircuitBreaker(options)
    circuit.failure(0)
    circuit.failure(1)
    expect(circuit.state(2)).toBe('closed')
    circuit.failure(2)
    expect(circuit.state(3)).toBe('open')
    expect(circuit.allows(999)).toBe(false)
  })

  it('ejects on a failure rate over the window even without a run of failures', () => {
    const circuit = new CircuitBreaker(options)
    for (let i = 0; i < 10; i++) {
      if (i % 2 === 0) circuit.success(i)
      else circuit.failure(i)
    }
    // 10 outcomes, 5 failed, never 3 in a row: the rate ejected it at the 10th.
    expect(circuit.state(10)).toBe('open')
  })

  it('forgets outcomes older than the window', () => {
    const circuit = new CircuitBreaker(options)
    for (let i = 0; i < 9; i++) circuit.success(i)
    circuit.failure(40_000)
    circuit.failure(40_001)
    expect(circuit.state(40_002)).toBe('closed')
  })

  it('lets a health check, never a request, decide the return once the cool-down is over', () => {
    const circuit = new CircuitBreaker(options)
    circuit.eject(0)
    expect(circuit.state(999)).toBe('open')
    expect(circuit.needsCheck(999)).toBe(false)
    expect(circuit.state(1_000)).toBe('checking')
    expect(circuit.allows(1_000)).toBe(false)
    expect(circuit.needsCheck(1_000)).toBe(true)
    circuit.checkStarted(1_000)
    expect(circuit.needsCheck(1_001)).toBe(false)
    circuit.checked(true, 1_010)
    expect(circuit.allows(1_010)).toBe(true)
  })

  it('ejects it again, for longer, when the health check finds it down', () => {
    const circuit = new CircuitBreaker(options)
    circuit.eject(0)
    circuit.checkStarted(1_000)
    circuit.checked(false, 1_500)
    expect(circuit.state(3_499)).toBe('open')
    expect(circuit.state(3_500)).toBe('checking')
  })

  it('starts a check again when the last one never answered (its request context ended first)', () => {
    const circuit = new CircuitBreaker(options)
    circuit.eject(0)
    circuit.checkStarted(1_000)
    expect(circuit.needsCheck(5_000)).toBe(false)
    expect(circuit.needsCheck(11_000)).toBe(true)
  })

  it('ejects for longer each time it is ejected again soon after its return, up to the cap', () => {
    const circuit = new CircuitBreaker(options)
    let now = 0
    const lengths: number[] = []
    for (let i = 0; i < MAX_EJECTION_MULTIPLIER + 2; i++) {
      circuit.eject(now)
      let back = now
      while (circuit.state(back) === 'open') back += 100
      lengths.push(back - now)
      now = back + 10
    }
    expect(lengths).toEqual([1_000, 2_000, 3_000, 3_000, 3_000])
  })

  it('forgets earlier ejections after a cool-down of good behaviour', () => {
    const circuit = new CircuitBreaker(options)
    circuit.eject(0)
    circuit.eject(1_000)
    // Back at 3,000 after its second (2 s) ejection; a success a cool-down later resets the multiplier.
    circuit.success(4_000)
    circuit.eject(4_001)
    expect(circuit.state(5_000)).toBe('open')
    expect(circuit.state(5_001)).toBe('checking')
  })

  it('calls a backend stalled while its oldest request has waited stallMs for headers and nothing newer was answered', () => {
    const circuit = new CircuitBreaker(options)
    const sent = circuit.attempt(0)
    expect(circuit.stalled(999)).toBe(false)
    expect(circuit.stalled(1_000)).toBe(true)
    // Stalled is a ranking hint, not an ejection.
    expect(circuit.allows(1_000)).toBe(true)
    sent.answered()
    sent.answered()
    expect(circuit.stalled(5_000)).toBe(false)
  })

  it('does not call a backend stalled when it answers requests sent after the one that waits: that one is slow for its own reasons', () => {
    const circuit = new CircuitBreaker(options)
    circuit.attempt(0)
    const newer = circuit.attempt(200)
    newer.answered()
    expect(circuit.stalled(5_000)).toBe(false)
    // A request sent after the newest answer and waiting too, with no answer after it, stalls it again.
    circuit.attempt(300)
    expect(circuit.stalled(1_299)).toBe(false)
    expect(circuit.stalled(1_300)).toBe(true)
  })

  it('lets an abandoned request leave the stall watch without counting as an answer', () => {
    const circuit = new CircuitBreaker(options)
    const old = circuit.attempt(0)
    circuit.attempt(100)
    old.ended()
    expect(circuit.reachedAfter('headers', 0)).toBe(false)
    expect(circuit.stalled(1_100)).toBe(true)
  })

  it('tells whether a request sent after a given time reached a stage', () => {
    const circuit = new CircuitBreaker(options)
    circuit.reached('first_event', 500)
    expect(circuit.reachedAfter('first_event', 400)).toBe(true)
    expect(circuit.reachedAfter('first_event', 500)).toBe(false)
    expect(circuit.reachedAfter('headers', 400)).toBe(false)
  })

  it('tells when any request, an older one included, last reached a stage: a backend working through its backlog is moving', () => {
    const circuit = new CircuitBreaker(options)
    expect(circuit.reachedSince('headers', 0)).toBe(false)
    // Sent at 100, answered at 2,000: after a request sent at 1,000, though sent before it.
    circuit.reached('headers', 100, 2_000)
    expect(circuit.reachedSince('headers', 1_000)).toBe(true)
    expect(circuit.reachedAfter('headers', 1_000)).toBe(false)
    expect(circuit.reachedSince('headers', 2_000)).toBe(false)
    expect(circuit.reachedSince('first_event', 1_000)).toBe(false)
  })
})
