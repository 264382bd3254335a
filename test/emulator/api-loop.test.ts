// The model of vLLM's API-server event loop (gpu-backend/emulator/api-loop.ts), on a manual clock:
// what runs when, as orderings and clock readings, with no real waiting.
import { describe, expect, it } from 'vitest'
import { ApiLoop, type Timers } from '../../gpu-backend/emulator/api-loop.ts'

/** A clock that moves only when told; due timers fire in time order, then pending promises settle. */
function manualTimers() {
  let now = 0
  let seq = 0
  const timers = new Map<number, { at: number; run: () => void }>()
  const settle = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve()
  }
  const api: Timers = {
    now: () => now,
    after: (ms, run) => {
      const id = seq++
      timers.set(id, { at: now + ms, run })
      return () => timers.delete(id)
    },
  }
  return {
    api,
    now: () => now,
    /** Moves the clock to `to`, firing every timer due by then in order. */
    async advance(to: number): Promise<void> {
      for (;;) {
        await settle()
        const due = [...timers.entries()].filter(([, t]) => t.at <= to).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0]
        if (due === undefined) break
        timers.delete(due[0])
        now = due[1].at
        due[1].run()
      }
      now = to
      await settle()
    },
  }
}

describe('API-server loop model', () => {
  it('runs a request at once, synchronously, when there is no lag and nothing holds the loop', () => {
    const loop = new ApiLoop(manualTimers().api)
    const ran: string[] = []
    loop.enter(0, () => ran.push('health'))
    expect(ran).toEqual(['health'])
  })

  it('makes every request that arrives during synchronous work wait for its end, then runs them in arrival order', async () => {
    const clock = manualTimers()
    const loop = new ApiLoop(clock.api)
    const ran: [string, number][] = []
    const rendered = loop.work(100).then(() => ran.push(['render done', clock.now()]))
    await clock.advance(10)
    loop.enter(0, () => ran.push(['health', clock.now()]))
    await clock.advance(20)
    loop.enter(0, () => ran.push(['metrics', clock.now()]))
    await clock.advance(99)
    expect(ran).toEqual([])
    await clock.advance(100)
    await rendered
    expect(ran).toEqual([
      ['render done', 100],
      ['health', 100],
      ['metrics', 100],
    ])
    expect(loop.heldMs).toBe(100)
  })

  it('queues synchronous work behind synchronous work: the second render starts when the first ends', async () => {
    const clock = manualTimers()
    const loop = new ApiLoop(clock.api)
    const done: [string, number][] = []
    void loop.work(50).then(() => done.push(['a', clock.now()]))
    void loop.work(30).then(() => done.push(['b', clock.now()]))
    loop.enter(0, () => done.push(['health', clock.now()]))
    await clock.advance(200)
    // a holds 0-50, b 50-80; /health arrived during a and queued behind b's render, which was first in line.
    expect(done).toEqual([
      ['a', 50],
      ['b', 80],
      ['health', 80],
    ])
  })

  it('keeps the loop free during off-loop work (the tokenizer thread)', async () => {
    const clock = manualTimers()
    const loop = new ApiLoop(clock.api)
    const ran: [string, number][] = []
    void loop.offLoop(500).then(() => ran.push(['tokenized', clock.now()]))
    await clock.advance(5)
    loop.enter(0, () => ran.push(['health', clock.now()]))
    await clock.advance(600)
    expect(ran).toEqual([
      ['health', 5],
      ['tokenized', 500],
    ])
    expect(loop.heldMs).toBe(0)
  })

  it('handles a request lagMs late; one that arrived during the lag keeps it after the lag is switched off, and nothing overtakes it', async () => {
    const clock = manualTimers()
    const loop = new ApiLoop(clock.api)
    const ran: [string, number][] = []
    loop.enter(4000, () => ran.push(['during lag', clock.now()]))
    await clock.advance(1000)
    // The lag is off for requests arriving from now on, but the loop's backlog goes first (asyncio is FIFO).
    loop.enter(0, () => ran.push(['after lag', clock.now()]))
    await clock.advance(5000)
    expect(ran).toEqual([
      ['during lag', 4000],
      ['after lag', 4000],
    ])
    // Once the backlog is gone, a request is handled at once again.
    loop.enter(0, () => ran.push(['later', clock.now()]))
    expect(ran.at(-1)).toEqual(['later', clock.now()])
  })

  it('runs nothing more once closed', async () => {
    const clock = manualTimers()
    const loop = new ApiLoop(clock.api)
    const ran: string[] = []
    loop.enter(100, () => ran.push('lagged'))
    void loop.work(50)
    loop.enter(0, () => ran.push('queued'))
    loop.close()
    await clock.advance(1000)
    expect(ran).toEqual([])
  })
})
