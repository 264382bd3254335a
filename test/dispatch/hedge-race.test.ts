import { describe, expect, it } from 'vitest'
import type { RelaySource } from '../../src/relay/generation.ts'
import type { HedgePlan, HedgeWinner } from '../../src/dispatch/hedge.ts'
import { relaySse } from '../../src/relay/stream.ts'
import { UpstreamCall } from '../../src/dispatch/upstream-call.ts'
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

/** A plan whose primary is queued at once, hedged with `hedge`, and that says what the race did. */
function planWith(hedge: RelaySource | null) {
  const { promise: started, resolve } = Promise.withResolvers<void>()
  const seen = { dropped: [] as RelaySource[], won: [] as HedgeWinner[] }
  const plan: HedgePlan<RelaySource> = {
    queued: () => Promise.resolve(true),
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

  it("tells the winner's call, once, when its first data event reaches the client, and the loser's never (the attempts then let the body go)", async () => {
    const delivered = { primary: 0, hedge: 0 }
    const counted = (role: HedgeWinner) => {
      const upstream = manualStream()
      const call = new UpstreamCall(undefined, { firstEventMs: 5_000, idleMs: 5_000, onDelivered: () => delivered[role]++ })
      return { upstream, source: { upstream: upstream.stream, call } satisfies RelaySource }
    }
    const primary = counted('primary')
    const hedge = counted('hedge')
    const { plan, started } = planWith(hedge.source)
    const body = relay(primary.source, plan)
    await started
    await turn()
    // A usage chunk the client did not ask for is not sent: nothing has reached the client yet.
    hedge.upstream.push(
      sse(
        '{"id":"H","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}',
      ),
    )
    await turn()
    expect(delivered).toEqual({ primary: 0, hedge: 0 })
    hedge.upstream.push(sse(role('H'), token('H', 'h1')))
    await turn()
    expect(delivered).toEqual({ primary: 0, hedge: 1 })
    hedge.upstream.push(sse(token('H', 'h2'), '[DONE]'))
    expect(frames(await readAll(body))).toEqual([
      `data: ${role('H')}`,
      `data: ${token('H', 'h1')}`,
      `data: ${token('H', 'h2')}`,
      'data: [DONE]',
    ])
    expect(delivered).toEqual({ primary: 0, hedge: 1 })
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
    /** A plan whose `queued` the test settles, counting the hedges started. */
    function queuedPlan(hedge: RelaySource) {
      const queued = Promise.withResolvers<boolean>()
      const starts: number[] = []
      const plan: HedgePlan<RelaySource> = {
        queued: () => queued.promise,
        start: async () => {
          starts.push(Date.now())
          return hedge
        },
        dropped: () => undefined,
        won: () => undefined,
      }
      return { plan, queued, starts }
    }

    it('starts the hedge as soon as the ledger says so, and not before', async () => {
      const primary = source()
      const hedge = source()
      const { plan, queued, starts } = queuedPlan(hedge.source)
      const body = relay(primary.source, plan)
      await turn()
      expect(starts).toHaveLength(0)
      queued.resolve(true)
      await turn()
      expect(starts).toHaveLength(1)
      hedge.upstream.push(sse(role('H'), '[DONE]'))
      expect(frames(await readAll(body))).toEqual([`data: ${role('H')}`, 'data: [DONE]'])
      expect(primary.source.call.signal.aborted).toBe(true)
    })

    it('never hedges a primary the ledger counted with a free slot', async () => {
      const primary = source()
      const hedge = source()
      const { plan, queued, starts } = queuedPlan(hedge.source)
      const body = relay(primary.source, plan)
      queued.resolve(false)
      await turn()
      primary.upstream.push(sse(role('P'), '[DONE]'))
      expect(frames(await readAll(body))).toEqual([`data: ${role('P')}`, 'data: [DONE]'])
      expect(starts).toHaveLength(0)
    })

    it("does not hedge the replacement when a failed primary's answer comes after it failed over", async () => {
      const primary = source()
      const replacement = source()
      const hedge = source()
      const queued = Promise.withResolvers<boolean>()
      let starts = 0
      const plan: HedgePlan<RelaySource> = {
        queued: (attempt) => (attempt === primary.source ? queued.promise : Promise.resolve(false)),
        start: async () => {
          starts++
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
      await turn()
      expect(starts).toBe(0)
      replacement.upstream.push(sse(role('R'), '[DONE]'))
      expect(frames(await readAll(body))).toEqual([`data: ${role('R')}`, 'data: [DONE]'])
    })
  })
})
