// The board of keys (src/telemetry/key-board.ts): the keys nearest their budgets and the flagged
// keys, bounded whatever the number of keys, aging out keys that stopped reporting.
import { describe, expect, it } from 'vitest'
import type { BudgetState, KeyReport } from '../../src/limits/key-report.ts'
import { CLOSEST_SIZE, FLAGGED_SIZE, KeyBoardState, REPORT_MAX_AGE_MS, usedRatio } from '../../src/telemetry/key-board.ts'

const NOW = Date.UTC(2026, 11, 7, 12, 0, 0)
const END_OF_DAY = Date.UTC(2026, 11, 8)
const END_OF_MONTH = Date.UTC(2027, 0, 1)

const keyId = (n: number) => `key_${n.toString(16).padStart(16, '0')}`

function budget(
  period: 'day' | 'month',
  used: number,
  limit: number,
  resetsAt = period === 'day' ? END_OF_DAY : END_OF_MONTH,
): BudgetState {
  return { period, limit, used, remaining: Math.max(0, limit - used), resetsAt }
}

function report(n: number, budgets: BudgetState[], spike: Partial<KeyReport['spike']> = {}, at = NOW): KeyReport {
  return { keyId: keyId(n), at, budgets, spike: { flagged: false, hourTokens: 0, normalTokens: 0, ...spike } }
}

describe('the board of keys', () => {
  it('ranks keys by the highest share used over any of their budgets', () => {
    const board = new KeyBoardState()
    board.report(report(1, [budget('day', 500, 1000), budget('month', 9000, 10_000)]), NOW)
    board.report(report(2, [budget('day', 800, 1000)]), NOW)
    board.report(report(3, [budget('month', 100, 10_000)]), NOW)
    expect(board.board(NOW).closest.map((entry) => entry.keyId)).toEqual([keyId(1), keyId(2), keyId(3)])
    expect(usedRatio(board.board(NOW).closest[0]?.budgets ?? [], NOW)).toBeCloseTo(0.9)
  })

  it('keeps a key without budgets, or with nothing used, off the closest list, and a new report replaces the last', () => {
    const board = new KeyBoardState()
    board.report(report(1, []), NOW)
    board.report(report(2, [budget('day', 0, 1000)]), NOW)
    board.report(report(3, [budget('day', 700, 1000)]), NOW)
    expect(board.board(NOW).closest.map((entry) => entry.keyId)).toEqual([keyId(3)])
    board.report(report(3, [budget('day', 900, 1000)], {}, NOW + 10_000), NOW + 10_000)
    expect(board.board(NOW + 10_000).closest).toMatchObject([{ keyId: keyId(3), budgets: [{ used: 900 }] }])
    // A report older than the one kept (two flushes' reports crossing) changes nothing.
    board.report(report(3, [budget('day', 800, 1000)], {}, NOW + 5_000), NOW + 11_000)
    expect(board.board(NOW + 11_000).closest).toMatchObject([{ budgets: [{ used: 900 }] }])
  })

  it(`holds at most ${CLOSEST_SIZE} closest keys, however many report: the lowest share leaves`, () => {
    const board = new KeyBoardState()
    for (let n = 1; n <= 1000; n++) board.report(report(n, [budget('day', n, 1000)]), NOW)
    const closest = board.board(NOW).closest
    expect(closest).toHaveLength(CLOSEST_SIZE)
    expect(closest.map((entry) => entry.keyId)).toEqual(Array.from({ length: CLOSEST_SIZE }, (_, i) => keyId(1000 - i)))
    expect(board.size).toBe(CLOSEST_SIZE)
    // A key below all of them does not get on; one above does, pushing the lowest off.
    board.report(report(2000, [budget('day', 1, 1000)]), NOW)
    board.report(report(2001, [budget('day', 999.5, 1000)]), NOW)
    const after = board.board(NOW).closest.map((entry) => entry.keyId)
    expect(after).not.toContain(keyId(2000))
    expect(after[1]).toBe(keyId(2001))
    expect(after).not.toContain(keyId(1000 - CLOSEST_SIZE + 1))
  })

  it('drops a budget whose period has reset, and the key once none is left', () => {
    const board = new KeyBoardState()
    // Reported a minute before midnight UTC, read a minute after it (well within the hour).
    const lastMinute = END_OF_DAY - 60_000
    board.report(report(1, [budget('day', 990, 1000), budget('month', 2000, 10_000)], {}, lastMinute), lastMinute)
    board.report(report(2, [budget('day', 500, 1000)], {}, lastMinute), lastMinute)
    expect(board.board(lastMinute).closest.map((entry) => entry.keyId)).toEqual([keyId(1), keyId(2)])
    const nextDay = END_OF_DAY + 60_000
    const closest = board.board(nextDay).closest
    expect(closest.map((entry) => entry.keyId)).toEqual([keyId(1)])
    expect(closest[0]?.budgets).toEqual([budget('month', 2000, 10_000)])
    expect(board.size).toBe(1)
  })

  it(`ages out a key that has not reported for ${REPORT_MAX_AGE_MS / 60_000} minutes, closest or flagged`, () => {
    const board = new KeyBoardState()
    board.report(report(1, [budget('month', 9000, 10_000)], { flagged: true, hourTokens: 50_000, normalTokens: 1000 }), NOW)
    board.report(report(2, [budget('month', 5000, 10_000)], { flagged: true, hourTokens: 20_000, normalTokens: 1000 }), NOW + 30 * 60_000)
    expect(board.board(NOW + REPORT_MAX_AGE_MS)).toMatchObject({ closest: [{ keyId: keyId(1) }, { keyId: keyId(2) }] })
    const later = board.board(NOW + REPORT_MAX_AGE_MS + 1)
    expect(later.closest.map((entry) => entry.keyId)).toEqual([keyId(2)])
    expect(later.flagged.map((entry) => entry.keyId)).toEqual([keyId(2)])
    expect(board.size).toBe(2)
  })

  it('lists flagged keys, most tokens over the last hour first, until a report clears the flag', () => {
    const board = new KeyBoardState()
    board.report(report(1, [], { flagged: true, hourTokens: 10_000, normalTokens: 500 }), NOW)
    board.report(report(2, [], { flagged: true, hourTokens: 90_000, normalTokens: 2000 }), NOW)
    board.report(report(3, [], { flagged: false, hourTokens: 99_000, normalTokens: 98_000 }), NOW)
    expect(board.board(NOW).flagged).toMatchObject([
      { keyId: keyId(2), spike: { hourTokens: 90_000, normalTokens: 2000 } },
      { keyId: keyId(1), spike: { hourTokens: 10_000 } },
    ])
    board.report(report(2, [], { flagged: false, hourTokens: 1000, normalTokens: 2000 }, NOW + 1), NOW + 1)
    expect(board.board(NOW + 1).flagged.map((entry) => entry.keyId)).toEqual([keyId(1)])
  })

  it(`holds at most ${FLAGGED_SIZE} flagged keys: the one with the fewest tokens over the last hour leaves`, () => {
    const board = new KeyBoardState()
    for (let n = 1; n <= 500; n++) board.report(report(n, [], { flagged: true, hourTokens: n * 100, normalTokens: 10 }), NOW)
    const flagged = board.board(NOW).flagged
    expect(flagged).toHaveLength(FLAGGED_SIZE)
    expect(flagged[0]?.keyId).toBe(keyId(500))
    expect(flagged.at(-1)?.keyId).toBe(keyId(500 - FLAGGED_SIZE + 1))
    expect(board.size).toBe(FLAGGED_SIZE)
  })

  it('ignores a malformed report: a key id that is not one, numbers that are not finite; keeps one budget per period', () => {
    const board = new KeyBoardState()
    board.report({ ...report(1, [budget('day', 900, 1000)]), keyId: 'key_"}\nx' }, NOW)
    board.report(report(2, [budget('day', Number.NaN, 1000)], { flagged: true, hourTokens: Number.POSITIVE_INFINITY }), NOW)
    board.report(report(3, [budget('day', 900, 1000), budget('day', 10, 1000)]), NOW)
    const { closest, flagged } = board.board(NOW)
    expect(closest.map((entry) => entry.keyId)).toEqual([keyId(3)])
    expect(closest[0]?.budgets).toHaveLength(1)
    expect(flagged).toEqual([])
  })
})
