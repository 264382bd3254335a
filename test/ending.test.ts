import { describe, expect, it } from 'vitest'
import { END_REASONS, outcomeOf, reasonOfCode, type EndReason } from '../src/ending.ts'
import { ERROR_CODES } from '../src/error-codes.ts'

describe('why a request ended', () => {
  it('counts a reason as client_abort only when the caller ended it, as refused only before any backend, as ok only when done', () => {
    const callerEnded: readonly EndReason[] = ['client_gone', 'session_cancelled', 'session_abandoned']
    for (const reason of END_REASONS) {
      const expected =
        reason === 'done' ? 'ok' : reason === 'refused' ? 'refused' : callerEnded.includes(reason) ? 'client_abort' : 'upstream_error'
      expect(outcomeOf(reason), reason).toBe(expected)
    }
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
