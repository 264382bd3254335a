import { describe, expect, it } from 'vitest'
import type { RelaySource } from '../../src/relay/generation.ts'
import type { HedgePlan, HedgeReason, HedgeWinner } from '../../src/relay/hedge.ts'
import { relaySse } from '../../src/relay/stream.ts'
import { UpstreamCall } from '../../src/relay/upstream-call.ts'
import { manualStream } from '../support/streams.ts'
import { frames, readAll } from '../support/sse.ts'

// The race itself, with two upstreams the test feeds by hand, so both can send their first data
// event in the same turn: the client must see exactly one of them, never a mix.

const chunk = (id: string, delta: string) =>
  `{"id":"${id}","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":null}]}`
const role = (id: string) => chunk(id, '{"role":"assistant","content":""}')
const token = (id: string, text: string) => chunk(id, `{"content":"${text}"}`)
const engineError = '{"error":{"message":"EngineCore encountered an issue.","type":"BadRequestError","param":null,"code":400}}'
const sse = (...payloads: string[]) => payloads.map((payload) => `data: ${payload}\n\n`).join('')

function source() {
  const upstream = manualStream()
  const call = new UpstreamCall(undefined, { firstEventMs: 5_000, idleMs: 5_000 })
  return { upstream, source: { upstream: upstream.stream, call } satisfies RelaySource }
}

/** A plan that hedges at once with `hedge`, and says what the race did. */
function planWith(hedge: RelaySource | null) {
  const { promise: started, resolve } = Promise.withResolvers<void>()
  const seen = { dropped: [] as RelaySource[], won: [] as HedgeWinner[] }
  const plan: HedgePlan<RelaySource> = {
    delayMs: () => 0,
    start: async () => {
      resolve()
      return hedge
    },
    dropped: (failed) => void seen.dropped.push(failed),
    won: (_, by) => void seen.won.push(by),
  }
  return { plan, started, seen }
}

function relay(first: RelaySource, plan: HedgePlan<RelaySource>) {
  return relaySse(Promise.resolve({ first, next: null, hedge: plan }), {
    forwardUsage: false,
    forwardChunkUsage: false,
    keepAliveMs: 10_000,
  })
}

const turn = () => new Promise((resolve) => setTimeout(resolve, 10))

/** A primary and a hedge, both started and past one turn, before either has sent anything. */
async function startedRace() {
  const primary = source()
  const hedge = source()
  const { plan, started, seen } = planWith(hedge.source)
  const body = relay(primary.source, plan)
  await started
  await turn()
  return { primary, hedge, seen, body }
}

describe('the hedge race', () => {
  it('gives the client one source alone when both send their first data event in the same turn, and stops the other', async () => {
    const { primary, hedge, seen, body } = await startedRace()
    hedge.upstream.push(sse(role('H'), token('H', 'h1')))
    primary.upstream.push(sse(role('P'), token('P', 'p1')))
    await turn()
    const winner = seen.won[0] === 'hedge' ? hedge : primary
    const loser = winner === hedge ? primary : hedge
    const id = winner === hedge ? 'H' : 'P'
    winner.upstream.push(sse(token(id, 'x'), '[DONE]'))
    const sent = frames(await readAll(body))
    expect(sent).toEqual([`data: ${role(id)}`, `data: ${token(id, `${id.toLowerCase()}1`)}`, `data: ${token(id, 'x')}`, 'data: [DONE]'])
    expect(seen.won).toHaveLength(1)
    expect(loser.source.call.signal.aborted).toBe(true)
    await loser.upstream.cancelled
  })

  it("keeps the request when the primary's backend fails before any data: the hedge serves it, the failure is the backend's", async () => {
    const { primary, hedge, seen, body } = await startedRace()
    primary.upstream.push(sse(engineError))
    await turn()
    hedge.upstream.push(sse(role('H'), token('H', 'h1'), '[DONE]'))
    const sent = frames(await readAll(body))
    expect(sent).toEqual([`data: ${role('H')}`, `data: ${token('H', 'h1')}`, 'data: [DONE]'])
    expect(seen.dropped).toEqual([primary.source])
    expect(seen.won).toEqual(['hedge'])
  })

  it('reads the primary alone when the plan starts no hedge', async () => {
    const primary = source()
    const { plan, started, seen } = planWith(null)
    const body = relay(primary.source, plan)
    await started
    primary.upstream.push(sse(role('P'), token('P', 'p1'), '[DONE]'))
    expect(frames(await readAll(body))).toEqual([`data: ${role('P')}`, `data: ${token('P', 'p1')}`, 'data: [DONE]'])
    expect(seen.won).toEqual([])
  })

  describe('a primary its backend has queued (the slot ledger said so)', () => {
    /** A plan with a long deadline whose `queued` the test settles, recording each start's reason. */
    function queuedPlan(hedge: RelaySource, delayMs: number) {
      const queued = Promise.withResolvers<boolean>()
      const reasons: HedgeReason[] = []
      const plan: HedgePlan<RelaySource> = {
        delayMs: () => delayMs,
        queued: () => queued.promise,
        start: async (reason) => {
          reasons.push(reason)
          return hedge
        },
        dropped: () => undefined,
        won: () => undefined,
      }
      return { plan, queued, reasons }
    }

    it('starts the hedge at once, without waiting for the deadline', async () => {
      const primary = source()
      const hedge = source()
      const { plan, queued, reasons } = queuedPlan(hedge.source, 60_000)
      const body = relay(primary.source, plan)
      await turn()
      expect(reasons).toEqual([])
      queued.resolve(true)
      await turn()
      expect(reasons).toEqual(['queued'])
      hedge.upstream.push(sse(role('H'), '[DONE]'))
      expect(frames(await readAll(body))).toEqual([`data: ${role('H')}`, 'data: [DONE]'])
      expect(primary.source.call.signal.aborted).toBe(true)
    })

    it('waits for the deadline when the backend had a free slot', async () => {
      const primary = source()
      const hedge = source()
      const { plan, queued, reasons } = queuedPlan(hedge.source, 30)
      const body = relay(primary.source, plan)
      queued.resolve(false)
      await turn()
      expect(reasons).toEqual([])
      await new Promise((resolve) => setTimeout(resolve, 40))
      expect(reasons).toEqual(['deadline'])
      hedge.upstream.push(sse(role('H'), '[DONE]'))
      await readAll(body)
    })

    it("keeps the next round's deadline when a failed primary's answer comes after it failed over", async () => {
      const primary = source()
      const replacement = source()
      const hedge = source()
      const queued = Promise.withResolvers<boolean>()
      const reasons: HedgeReason[] = []
      const plan: HedgePlan<RelaySource> = {
        delayMs: (attempt) => (attempt === primary.source ? 60_000 : 30),
        queued: (attempt) => (attempt === primary.source ? queued.promise : Promise.resolve(false)),
        start: async (reason) => {
          reasons.push(reason)
          return hedge.source
        },
        dropped: () => undefined,
        won: () => undefined,
      }
      const body = relaySse(Promise.resolve({ first: primary.source, next: async () => replacement.source, hedge: plan }), {
        forwardUsage: false,
        forwardChunkUsage: false,
        keepAliveMs: 10_000,
      })
      primary.upstream.push(sse(engineError))
      await turn()
      queued.resolve(true)
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(reasons).toEqual(['deadline'])
      hedge.upstream.push(sse(role('H'), '[DONE]'))
      await readAll(body)
    })

    it('hedges once when the answer comes after the deadline already started the hedge', async () => {
      const primary = source()
      const hedge = source()
      const { plan, queued, reasons } = queuedPlan(hedge.source, 0)
      const body = relay(primary.source, plan)
      await turn()
      queued.resolve(true)
      await turn()
      expect(reasons).toEqual(['deadline'])
      hedge.upstream.push(sse(role('H'), '[DONE]'))
      await readAll(body)
    })
  })
})
