import { describe, expect, it } from 'vitest'
import { LiveStats } from '../../src/fleet/live-stats.ts'
import { PLACEMENT_LOG_ENTRIES, PLACEMENTS_PER_EXCHANGE, PlacementLog, type Placement } from '../../src/fleet/placements.ts'

const placed = (prefixKey: string, backendId: string): Placement => ({ prefixKey, backendId })
const keys = (placements: Placement[]) => placements.map((p) => p.prefixKey)

describe('PlacementLog', () => {
  it('gives an isolate only what came after the last sequence it saw, and none of its own', () => {
    const log = new PlacementLog(1_000)
    const first = log.exchange({ placements: [placed('c1', 'a'), placed('c2', 'b')], since: 0 })
    expect(first.placements).toEqual([])
    expect(first.seq).toBe(1_002)
    const other = log.exchange({ placements: [placed('c3', 'a')], since: 1_001 })
    expect(keys(other.placements)).toEqual(['c2'])
    const again = log.exchange({ placements: [], since: first.seq })
    expect(keys(again.placements)).toEqual(['c3'])
    expect(log.exchange({ placements: [], since: again.seq }).placements).toEqual([])
  })

  it('answers an isolate it cannot place (ahead of a restarted object, or too far behind) with the newest entries', () => {
    const log = new PlacementLog(5_000)
    log.add(Array.from({ length: PLACEMENTS_PER_EXCHANGE }, (_, i) => placed(`c${i}`, 'a')))
    log.add([placed('last', 'b')])
    const ahead = log.since(9_999_999)
    expect(ahead.placements).toHaveLength(PLACEMENTS_PER_EXCHANGE)
    expect(ahead.placements.at(-1)?.prefixKey).toBe('last')
    expect(log.since(0).placements).toHaveLength(PLACEMENTS_PER_EXCHANGE)
  })

  it('stays bounded however much is added, keeping the newest', () => {
    const log = new PlacementLog(0)
    for (let round = 0; round < 40; round++)
      log.add(Array.from({ length: PLACEMENTS_PER_EXCHANGE }, (_, i) => placed(`r${round}-${i}`, 'a')))
    const kept = log.since(0, Number.POSITIVE_INFINITY).placements.length
    expect(kept).toBeGreaterThanOrEqual(PLACEMENT_LOG_ENTRIES)
    expect(kept).toBeLessThanOrEqual(PLACEMENT_LOG_ENTRIES * 2)
    expect(log.since(log.seq - 1).placements).toEqual([placed(`r39-${PLACEMENTS_PER_EXCHANGE - 1}`, 'a')])
  })

  it('drops what is not a placement and caps one exchange', () => {
    const log = new PlacementLog(0)
    const junk = [
      placed('', 'a'),
      placed('k', 'x'.repeat(500)),
      { prefixKey: 1, backendId: 'a' },
      null,
      ['k', 'a'],
    ] as unknown as Placement[]
    log.add([...junk, placed('ok', 'a')])
    expect(log.seq).toBe(1)
    log.add(Array.from({ length: PLACEMENTS_PER_EXCHANGE * 3 }, (_, i) => placed(`c${i}`, 'a')))
    expect(log.seq).toBe(1 + PLACEMENTS_PER_EXCHANGE)
  })

  it('sends without asking when since is null', () => {
    const log = new PlacementLog(0)
    log.add([placed('c1', 'a')])
    expect(log.exchange({ placements: [placed('c2', 'b')], since: null })).toEqual({ placements: [], seq: 2 })
  })
})

describe('LiveStats as a placement peer', () => {
  it('hands over each remembered turn once, then learns the other isolates’ placements, the latest winning', () => {
    const live = new LiveStats()
    live.remember('c1', 'a')
    live.remember('c2', 'b')
    expect(live.takePlacements()).toEqual({ placements: [placed('c1', 'a'), placed('c2', 'b')], since: 0 })
    expect(live.takePlacements()).toEqual({ placements: [], since: 0 })
    live.learnPlacements({ placements: [placed('c1', 'c'), placed('c9', 'a'), placed('c1', 'b')], seq: 42 })
    expect(live.recall('c1')).toBe('b')
    expect(live.recall('c9')).toBe('a')
    expect(live.takePlacements()).toEqual({ placements: [], since: 42 })
  })

  it('keeps the latest turns of a burst larger than one exchange', () => {
    const live = new LiveStats()
    for (let i = 0; i < PLACEMENTS_PER_EXCHANGE + 5; i++) live.remember(`c${i}`, 'a')
    const { placements } = live.takePlacements()
    expect(placements).toHaveLength(PLACEMENTS_PER_EXCHANGE)
    expect(placements[0]?.prefixKey).toBe('c5')
  })
})
