import { describe, expect, it } from 'vitest'
import { outcomeOf, reasonOfCode, type EndReason } from '../src/ending.ts'
import { ERROR_CODES } from '../src/error-codes.ts'

describe('why a request ended', () => {
  it('puts every reason in exactly the outcome /metrics counts it under', () => {
    const expected: Record<EndReason, string> = {
      done: 'ok',
      refused: 'refused',
      client_gone: 'client_abort',
      request_too_slow: 'upstream_error',
      backend_timeout: 'upstream_error',
      backend_failed: 'upstream_error',
      session_cancelled: 'client_abort',
      session_abandoned: 'client_abort',
      session_lifetime: 'upstream_error',
      session_interrupted: 'upstream_error',
    }
    for (const [reason, outcome] of Object.entries(expected)) expect(outcomeOf(reason as EndReason)).toBe(outcome)
  })

  it("reads a failure's reason from the gateway's error code, and calls any other backend failure backend_failed", () => {
    expect(reasonOfCode('client_closed_request')).toBe('client_gone')
    expect(reasonOfCode('request_too_slow')).toBe('request_too_slow')
    expect(reasonOfCode('upstream_timeout')).toBe('backend_timeout')
    for (const code of ['upstream_unreachable', 'upstream_connection_lost', 'upstream_error', null] as const)
      expect(reasonOfCode(code)).toBe('backend_failed')
    for (const code of ['client_closed_request', 'request_too_slow', 'upstream_timeout']) expect(ERROR_CODES).toContain(code)
  })
})
