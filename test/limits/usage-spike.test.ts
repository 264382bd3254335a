// The spike rule (src/limits/usage-spike.ts): a key's last hour against the median of its own
// active hours over the 7 days before, with a floor and 24 h of history first.
import { describe, expect, it } from 'vitest'
import {
  HOUR_MS,
  HOURS_KEPT,
  HourlyTokens,
  hourNumber,
  median,
  NORMAL_HOURS,
  SPIKE_FACTOR,
  SPIKE_FLOOR_TOKENS,
  SPIKE_MIN_HISTORY_HOURS,
  spikeState,
  type HourlyStore,
} from '../../src/limits/usage-spike.ts'

/** The start of an hour well after the epoch, so hour numbers are ordinary. */
const H = 500_000
const at = (hour: number, minutes = 0) => hour * HOUR_MS + minutes * 60_000

/** A key used `normal` tokens in every hour of the `days` days before hour H - 1, first used then. */
function steadyKey(normal: number, days = 7): Map<number, number> {
  const hours = new Map<number, number>()
  for (let h = H - 2; h > H - 2 - days * 24; h--) hours.set(h, normal)
  return hours
}

describe('the spike rule', () => {
  it('flags a key whose last hour is more than SPIKE_FACTOR times its normal and above the floor', () => {
    const hours = steadyKey(10_000)
    hours.set(H, 80_001)
    const state = spikeState({ hours, firstHour: H - 2 - 7 * 24 + 1 }, at(H, 59.999))
    expect(state).toEqual({ flagged: true, hourTokens: 80_001, normalTokens: 10_000 })
  })

  it('does not flag a last hour of exactly SPIKE_FACTOR times the normal', () => {
    const hours = steadyKey(10_000)
    hours.set(H, SPIKE_FACTOR * 10_000)
    expect(spikeState({ hours, firstHour: H - 100 }, at(H, 59.999)).flagged).toBe(false)
  })

  it('never flags below the floor, however far above its normal the key is', () => {
    const hours = steadyKey(100)
    hours.set(H, SPIKE_FLOOR_TOKENS)
    expect(spikeState({ hours, firstHour: H - 100 }, at(H, 59.999))).toMatchObject({ flagged: false, normalTokens: 100 })
    hours.set(H, SPIKE_FLOOR_TOKENS + 1)
    expect(spikeState({ hours, firstHour: H - 100 }, at(H, 59.999)).flagged).toBe(true)
  })

  it('has no normal for a brand-new key: nothing is flagged before SPIKE_MIN_HISTORY_HOURS of history', () => {
    const hours = new Map([[H, 10_000_000]])
    expect(spikeState({ hours, firstHour: H }, at(H, 30))).toEqual({ flagged: false, hourTokens: 10_000_000, normalTokens: 0 })
    const young = new Map([...steadyKey(1_000, 1), [H, 10_000_000]])
    expect(spikeState({ hours: young, firstHour: H - SPIKE_MIN_HISTORY_HOURS + 1 }, at(H, 59.999)).flagged).toBe(false)
    expect(spikeState({ hours: young, firstHour: H - SPIKE_MIN_HISTORY_HOURS }, at(H, 59.999)).flagged).toBe(true)
    expect(spikeState({ hours: young, firstHour: null }, at(H, 59.999)).flagged).toBe(false)
  })

  it('takes the normal from active hours only: a key idle most of the day is compared with its busy hours', () => {
    const hours = new Map<number, number>()
    // Eight busy hours a day for a week: 100k tokens each; the other 16 hours idle.
    for (let day = 0; day < 7; day++) for (let h = 0; h < 8; h++) hours.set(H - 2 - day * 24 - h, 100_000)
    hours.set(H, 400_000)
    expect(spikeState({ hours, firstHour: H - 200 }, at(H, 59.999))).toEqual({ flagged: false, hourTokens: 400_000, normalTokens: 100_000 })
    hours.set(H, 800_001)
    expect(spikeState({ hours, firstHour: H - 200 }, at(H, 59.999)).flagged).toBe(true)
  })

  it('takes the median, so a few heavy hours do not raise the normal', () => {
    const hours = steadyKey(10_000)
    for (let h = H - 10; h < H - 2; h++) hours.set(h, 5_000_000)
    hours.set(H, 90_000)
    expect(spikeState({ hours, firstHour: H - 200 }, at(H, 59.999))).toMatchObject({ flagged: true, normalTokens: 10_000 })
  })

  it('counts the previous hour in the last hour, in proportion to the part of it within the last 60 minutes, and not in the normal', () => {
    const hours = steadyKey(10_000)
    hours.set(H - 1, 1_000_000)
    hours.set(H, 0)
    const quarter = spikeState({ hours, firstHour: H - 200 }, at(H, 15))
    expect(quarter).toEqual({ flagged: true, hourTokens: 750_000, normalTokens: 10_000 })
    expect(spikeState({ hours, firstHour: H - 200 }, at(H + 1, 0)).hourTokens).toBe(0)
  })

  it('looks back NORMAL_HOURS complete hours before the previous one, no further', () => {
    const hours = new Map<number, number>()
    hours.set(H - 1 - NORMAL_HOURS, 1_000)
    hours.set(H - 2 - NORMAL_HOURS, 1_000_000)
    hours.set(H, 60_000)
    expect(spikeState({ hours, firstHour: H - 400 }, at(H, 59.999))).toMatchObject({ flagged: true, normalTokens: 1_000 })
  })

  it('computes the median of an odd and an even count, and 0 of none', () => {
    expect(median([])).toBe(0)
    expect(median([5, 1, 3])).toBe(3)
    expect(median([4, 1, 3, 2])).toBe(2.5)
  })
})

describe('the hourly totals', () => {
  function recording() {
    const writes: string[] = []
    const store: HourlyStore = {
      saveHour: (hour, tokens) => writes.push(`save ${hour - H} ${tokens}`),
      dropHour: (hour) => writes.push(`drop ${hour - H}`),
      saveFirstHour: (hour) => writes.push(`first ${hour - H}`),
    }
    return { writes, store }
  }

  it('adds settled tokens to their hour, writing the hour row (and the first hour, once)', () => {
    const { writes, store } = recording()
    const hourly = new HourlyTokens({}, store)
    hourly.add(100, at(H, 1))
    hourly.add(50, at(H, 59))
    hourly.add(0, at(H + 1, 0))
    hourly.add(7, at(H + 1, 0))
    expect(writes).toEqual(['first 0', 'save 0 100', 'save 0 150', 'save 1 7'])
    expect(hourly.firstHour).toBe(H)
    expect([...hourly.hours]).toEqual([
      [H, 150],
      [H + 1, 7],
    ])
  })

  it(`keeps ${HOURS_KEPT} hours and drops older ones as a new hour is written`, () => {
    const { writes, store } = recording()
    const hourly = new HourlyTokens(
      {
        hours: new Map([
          [H - HOURS_KEPT, 1],
          [H - HOURS_KEPT + 1, 2],
        ]),
        firstHour: H - 1_000,
      },
      store,
    )
    hourly.add(5, at(H, 0))
    expect(writes).toEqual(['save 0 5', `drop ${-HOURS_KEPT}`])
    expect([...hourly.hours.keys()]).toEqual([H - HOURS_KEPT + 1, H])
    expect(hourNumber(at(H, 59.999))).toBe(H)
  })
})
