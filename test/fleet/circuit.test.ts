import { describe, expect, it } from 'vitest'
import { CircuitBreaker } from '../../src/fleet/circuit.ts'

const options = {
  consecutiveFailures: 3,
  failureRate: 0.5,
  minOutcomes: 10,
  windowMs: 30_000,
  cooldownMs: 1_000,
  consecutiveTimeouts: 3,
  stallMs: 1_000,
}

describe('CircuitBreaker', () => {
  it('opens after the consecutive-failure limit and refuses requests during the cool-down', () => {
    const circuit = new CircuitBreaker(options)
    circuit.failure(0)
    circuit.failure(1)
    expect(circuit.state(2)).toBe('closed')
    circuit.failure(2)
    expect(circuit.state(3)).toBe('open')
    expect(circuit.allows(999)).toBe(false)
  })

  it('opens on a failure rate over the window even without a run of failures', () => {
    const circuit = new CircuitBreaker(options)
    for (let i = 0; i < 10; i++) {
      if (i % 2 === 0) circuit.success(i)
      else circuit.failure(i)
    }
    // 10 outcomes, 5 failed, never 3 in a row: the rate opened it at the 10th.
    expect(circuit.state(10)).toBe('open')
  })

  it('forgets outcomes older than the window', () => {
    const circuit = new CircuitBreaker(options)
    for (let i = 0; i < 9; i++) circuit.success(i)
    circuit.failure(40_000)
    circuit.failure(40_001)
    expect(circuit.state(40_002)).toBe('closed')
  })

  it('half-opens after the cool-down and lets exactly one probe through', () => {
    const circuit = new CircuitBreaker(options)
    for (let i = 0; i < 3; i++) circuit.failure(0)
    expect(circuit.state(1_000)).toBe('half_open')
    expect(circuit.allows(1_000)).toBe(true)
    circuit.attempt(1_000)
    expect(circuit.allows(1_001)).toBe(false)
  })

  it('closes when the probe succeeds and opens again for a new cool-down when it fails', () => {
    const healed = new CircuitBreaker(options)
    for (let i = 0; i < 3; i++) healed.failure(0)
    healed.attempt(1_000)
    healed.success(1_010)
    expect(healed.state(1_011)).toBe('closed')

    const broken = new CircuitBreaker(options)
    for (let i = 0; i < 3; i++) broken.failure(0)
    broken.attempt(1_000)
    broken.failure(1_010)
    expect(broken.state(1_500)).toBe('open')
    expect(broken.state(2_010)).toBe('half_open')
  })

  it('frees the probe slot when the probe ends without a verdict (the client left)', () => {
    const circuit = new CircuitBreaker(options)
    for (let i = 0; i < 3; i++) circuit.failure(0)
    circuit.attempt(1_000)
    circuit.released()
    expect(circuit.allows(1_001)).toBe(true)
  })

  it('opens after fewer missed deadlines than plain failures: each cost its request seconds', () => {
    const circuit = new CircuitBreaker({ ...options, consecutiveFailures: 5, consecutiveTimeouts: 2 })
    circuit.failure(0, true)
    expect(circuit.state(1)).toBe('closed')
    circuit.failure(1, true)
    expect(circuit.state(2)).toBe('open')
  })

  it('counts only consecutive missed deadlines: a fast failure or a success between them resets the count', () => {
    const circuit = new CircuitBreaker({ ...options, consecutiveFailures: 5, consecutiveTimeouts: 2 })
    circuit.failure(0, true)
    circuit.success(1)
    circuit.failure(2, true)
    circuit.failure(3, false)
    circuit.failure(4, true)
    expect(circuit.state(5)).toBe('closed')
  })

  it('calls a backend stalled while a request sent there has waited stallMs for headers, and not once it was answered', () => {
    const circuit = new CircuitBreaker(options)
    const answered = circuit.attempt(0)
    expect(circuit.stalled(999)).toBe(false)
    expect(circuit.stalled(1_000)).toBe(true)
    // Stalled is a ranking hint, not a verdict: the circuit stays closed.
    expect(circuit.allows(1_000)).toBe(true)
    answered()
    answered()
    expect(circuit.stalled(5_000)).toBe(false)
  })

  it('judges a stall by the oldest unanswered request', () => {
    const circuit = new CircuitBreaker(options)
    const first = circuit.attempt(0)
    circuit.attempt(900)
    first()
    expect(circuit.stalled(1_500)).toBe(false)
    expect(circuit.stalled(1_900)).toBe(true)
  })
})
