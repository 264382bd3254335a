// The load model (gpu-backend/emulator/scheduler.ts): --max-num-seqs and its FIFO queue,
// prefill cost and the prefix cache, decode slowing with the batch, and the /metrics gauges.
// The machine may be slow and shared: the assertions are orderings and lower bounds.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { Emulator } from '../../gpu-backend/emulator/server.ts'
import { chatBody, emulatorFor, eventually, MODEL, post, sleep } from './helpers.ts'
import { events, payloads, readUntil } from '../support/sse.ts'

const LABELS = `{model_name="${MODEL}",engine="0"}`
const now = () => performance.timeOrigin + performance.now()

type OpenStream = { reader: ReadableStreamDefaultReader<Uint8Array>; controller: AbortController }

/** Starts a streaming request and returns once its headers are in (they come at once, even when queued). */
async function openStream(emulator: Emulator, body: Record<string, unknown>): Promise<OpenStream> {
  const controller = new AbortController()
  onTestFinished(() => controller.abort())
  const response = await post(emulator, '/v1/chat/completions', { ...body, stream: true }, { signal: controller.signal })
  expect(response.status).toBe(200)
  const reader = response.body?.getReader()
  if (reader === undefined) throw new Error('no body')
  return { reader, controller }
}

/** A stream that sends one token chunk and then holds its slot until the client leaves. */
function stalled(emulator: Emulator): Promise<OpenStream> {
  return openStream(emulator, chatBody('fault=stall_after:1'))
}

/** Milliseconds from sending a streaming request to its first event; reads the stream to its end. */
async function timeToFirstEvent(emulator: Emulator, body: Record<string, unknown>): Promise<number> {
  const sentAt = now()
  const { reader } = await openStream(emulator, body)
  await readUntil(reader, (text) => events(text).length >= 1)
  const firstAt = now()
  await readUntil(reader, (text) => text.includes('data: [DONE]'))
  return firstAt - sentAt
}

function chat(messages: { role: string; content: string }[]): Record<string, unknown> {
  return { model: MODEL, messages }
}

async function metrics(emulator: Emulator): Promise<string> {
  return (await fetch(`${emulator.url}/metrics`)).text()
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{`))
  return Number(line?.split(' ').at(-1))
}

async function eventTimes(emulator: Emulator, text: string): Promise<number[]> {
  const id = String(payloads(text)[0]?.id)
  const response = await fetch(`${emulator.url}/emulator/event-times?id=${id}`)
  return ((await response.json()) as { times: number[] }).times
}

/** 200 Qwen2 BPE tokens (" hello" is one); as a system prompt, BOS + these 200 open the rendered prompt. */
const LONG = ' hello'.repeat(200)
const LONG_TOKENS = 201

describe('max-num-seqs', () => {
  it('holds the request after the first N in the waiting queue, on /metrics too, and starts it when a slot frees', async () => {
    const emulator = await emulatorFor({ maxNumSeqs: 2 })
    const held = [await stalled(emulator), await stalled(emulator)]
    const third = await openStream(emulator, chatBody('reasoning_tokens=1 content_tokens=1'))
    await eventually(
      () => emulator.load(),
      (load) => load.running === 2 && load.waiting === 1,
    )
    const text = await metrics(emulator)
    expect(text).toContain(`vllm:num_requests_running${LABELS} 2.0\n`)
    expect(text).toContain(`vllm:num_requests_waiting${LABELS} 1.0\n`)
    const stats = (await (await fetch(`${emulator.url}/emulator/stats`)).json()) as Record<string, unknown>
    expect(stats).toMatchObject({ running: 2, waiting: 1, maxWaiting: 1, inFlight: 3, streamsStarted: 3 })
    await sleep(50)
    expect(emulator.stats().tokensGenerated).toBe(2) // one per stalled stream, none for the waiting one
    held[0]?.controller.abort()
    const answer = await readUntil(third.reader, (sofar) => sofar.includes('data: [DONE]'))
    expect(payloads(answer).at(-1)).toMatchObject({ choices: [{ finish_reason: 'stop' }] })
    expect(emulator.load()).toMatchObject({ running: 1, waiting: 0, maxWaiting: 1 })
    expect(emulator.stats()).toMatchObject({ completed: 1, aborted: 1 })
  })

  it('gives each request in the queue a later first token than the one before it', async () => {
    const ttftMs = 100
    const emulator = await emulatorFor({ maxNumSeqs: 1, ttftMs, itlMs: 1, recordEventTimes: true })
    const sentAt = now()
    const streams: OpenStream[] = []
    // One at a time, so the queue order is the order sent.
    for (let i = 0; i < 3; i++) streams.push(await openStream(emulator, chatBody('reasoning_tokens=1 content_tokens=1')))
    const texts = await Promise.all(streams.map(({ reader }) => readUntil(reader, (text) => text.includes('data: [DONE]'))))
    const firsts = await Promise.all(texts.map(async (text) => ((await eventTimes(emulator, text))[0] ?? 0) - sentAt))
    // Each waits for the ones before it: its first token comes at least (position + 1) × ttft after sending.
    firsts.forEach((first, position) => expect(first).toBeGreaterThanOrEqual((position + 1) * ttftMs - 1))
    expect(firsts[0]).toBeLessThan(firsts[1] ?? 0)
    expect(firsts[1]).toBeLessThan(firsts[2] ?? 0)
    expect(emulator.load().maxWaiting).toBeGreaterThanOrEqual(1)
    const queued = await metrics(emulator)
    expect(metric(queued, 'vllm:request_queue_time_seconds_count')).toBe(3)
    // The last one, sent well within the first one's ttft, waited for the whole second one at least.
    expect(metric(queued, 'vllm:request_queue_time_seconds_sum')).toBeGreaterThanOrEqual((ttftMs - 1) / 1000)
  })

  it('takes a waiting request whose client leaves out of the queue: it never starts and counts as aborted', async () => {
    const emulator = await emulatorFor({ maxNumSeqs: 1 })
    const held = await stalled(emulator)
    const controller = new AbortController()
    const waiting = post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'), { signal: controller.signal })
    await eventually(
      () => emulator.load(),
      (load) => load.waiting === 1,
    )
    controller.abort()
    await expect(waiting).rejects.toThrow()
    const stats = await eventually(
      () => emulator.stats(),
      (s) => s.aborted === 1,
    )
    expect(stats).toMatchObject({ aborted: 1, inFlight: 1, tokensGenerated: 1 })
    expect(emulator.load()).toMatchObject({ running: 1, waiting: 0 })
    held.controller.abort()
    await eventually(
      () => emulator.load(),
      (load) => load.running === 0,
    )
    await sleep(50)
    expect(emulator.stats()).toMatchObject({ aborted: 2, inFlight: 0, completed: 0, tokensGenerated: 1 })
    // Only the stalled request was ever admitted: one queue time, one prefix lookup.
    expect(metric(await metrics(emulator), 'vllm:request_queue_time_seconds_count')).toBe(1)
    expect(emulator.load().prefixQueryTokens).toBeLessThan(emulator.stats().promptTokens)
  })

  it.each([
    ['fcfs', ['b', 'c', 'd']],
    ['priority', ['c', 'd', 'b']],
  ] as const)(
    'admits from the waiting queue under --scheduling-policy %s in vLLM order: arrival, or priority (lower first) then arrival',
    async (schedulingPolicy, order) => {
      const emulator = await emulatorFor({ maxNumSeqs: 1, schedulingPolicy, ttftMs: 5, itlMs: 1, recordEventTimes: true })
      const held = await stalled(emulator)
      const streams: Record<string, OpenStream> = {}
      // Sent one at a time, so arrival order is b, c, d; fcfs ignores the priorities, as vLLM's FCFS queue does.
      for (const [name, priority] of [
        ['b', 5],
        ['c', 1],
        ['d', 1],
      ] as const) {
        streams[name] = await openStream(emulator, { ...chatBody('reasoning_tokens=1 content_tokens=1'), priority })
      }
      await eventually(
        () => emulator.load(),
        (load) => load.waiting === 3,
      )
      held.controller.abort()
      const firsts = await Promise.all(
        (['b', 'c', 'd'] as const).map(async (name) => {
          const text = await readUntil((streams[name] as OpenStream).reader, (sofar) => sofar.includes('data: [DONE]'))
          return [name, (await eventTimes(emulator, text))[0] ?? 0] as const
        }),
      )
      expect([...firsts].sort((a, b) => a[1] - b[1]).map(([name]) => name)).toEqual(order)
    },
  )

  it('admits waiting requests at once when max-num-seqs is raised at runtime', async () => {
    const emulator = await emulatorFor({ maxNumSeqs: 1 })
    await stalled(emulator)
    await stalled(emulator)
    await eventually(
      () => emulator.load(),
      (load) => load.waiting === 1,
    )
    const changed = await post(emulator, '/emulator/config', { maxNumSeqs: 2 })
    expect(changed.status).toBe(200)
    expect(emulator.load()).toMatchObject({ running: 2, waiting: 0 })
  })
})

describe('prefill and the prefix cache', () => {
  it('makes the first token wait for the uncached prompt tokens, and a repeated prefix cheap', async () => {
    const emulator = await emulatorFor({ ttftMs: 0, prefillMsPerToken: 1, reasoningTokens: 0, contentTokens: 1 })
    const short = await timeToFirstEvent(emulator, chat([{ role: 'user', content: 'hi' }]))
    const long = await timeToFirstEvent(
      emulator,
      chat([
        { role: 'system', content: LONG },
        { role: 'user', content: 'first' },
      ]),
    )
    expect(long).toBeGreaterThanOrEqual(LONG_TOKENS)
    expect(long).toBeGreaterThan(short + 100)
    expect(emulator.load()).toMatchObject({ prefixHitRequests: 0, prefixHitTokens: 0 })
    // Same system prompt, another question: only the new message is prefilled.
    const again = await timeToFirstEvent(
      emulator,
      chat([
        { role: 'system', content: LONG },
        { role: 'user', content: 'second' },
      ]),
    )
    expect(again).toBeLessThan(long / 2)
    expect(emulator.load()).toMatchObject({
      prefixHitRequests: 1,
      prefixHitTokens: LONG_TOKENS,
      prefixQueryTokens: emulator.stats().promptTokens,
    })
    expect(metric(await metrics(emulator), 'vllm:prefix_cache_hits_total')).toBe(LONG_TOKENS)
  })

  it('holds only the most recent prompts within prefix-cache-tokens', async () => {
    const emulator = await emulatorFor({ prefixCacheTokens: 300, reasoningTokens: 0, contentTokens: 1 })
    const conversation = (topic: string) =>
      chat([
        { role: 'system', content: `${topic}${LONG}` },
        { role: 'user', content: 'go' },
      ])
    for (const topic of ['a', 'a', 'b', 'a']) await (await post(emulator, '/v1/chat/completions', conversation(topic))).text()
    // a, a (a hit of its whole prompt), b (evicts a: both do not fit in 300 tokens), a (a miss)
    expect(emulator.load()).toMatchObject({ prefixHitRequests: 1, prefixHitTokens: emulator.stats().promptTokens / 4 })
  })
})

describe('decode under load', () => {
  it('spaces tokens by itl plus batch-itl-ms-per-seq for every other running sequence', async () => {
    const itlMs = 2
    const perSeq = 20
    const emulator = await emulatorFor({ itlMs, batchItlMsPerSeq: perSeq, recordEventTimes: true })
    const body = chatBody('reasoning_tokens=5 content_tokens=1', { stream: true })
    const gapsOf = (times: number[]) => times.slice(2, 6).map((time, index) => time - (times[index + 1] ?? 0))
    const alone = gapsOf(await eventTimes(emulator, await (await post(emulator, '/v1/chat/completions', body)).text()))
    for (let i = 0; i < 3; i++) await stalled(emulator) // three more sequences in the batch
    await eventually(
      () => emulator.load(),
      (load) => load.running === 3,
    )
    const batched = gapsOf(await eventTimes(emulator, await (await post(emulator, '/v1/chat/completions', body)).text()))
    // events: role, r0..r4, ...: the gaps r0→r1 .. r3→r4 are decode steps with 4 running
    expect(batched).toHaveLength(4)
    for (const gap of batched) expect(gap).toBeGreaterThanOrEqual(itlMs + 3 * perSeq - 1)
    // Alone, a step is itl only: its median (one stalled step on a busy machine does not count)
    // is below every batched step.
    const median = [...alone].sort((a, b) => a - b)[Math.floor(alone.length / 2)] ?? Number.POSITIVE_INFINITY
    expect(median).toBeLessThan(Math.min(...batched))
  })
})

describe('scheduler gauges', () => {
  it("reports the running sequences' tokens over kv-cache-tokens as vllm:kv_cache_usage_perc", async () => {
    const emulator = await emulatorFor({ kvCacheTokens: 1000 })
    const held = await openStream(emulator, chat([{ role: 'user', content: `${LONG} [emulator fault=stall_after:0]` }]))
    await eventually(
      () => emulator.load(),
      (load) => load.running === 1,
    )
    const { promptTokens } = emulator.stats()
    expect(promptTokens).toBeGreaterThan(LONG_TOKENS)
    expect(metric(await metrics(emulator), 'vllm:kv_cache_usage_perc')).toBeCloseTo(promptTokens / 1000, 6)
    held.controller.abort()
    await eventually(
      () => emulator.load(),
      (load) => load.running === 0,
    )
    // The prompt stays in the prefix cache, but cached blocks of finished requests count as free.
    expect(await metrics(emulator)).toContain(`vllm:kv_cache_usage_perc${LABELS} 0.0\n`)
  })
})

describe('defaults', () => {
  it('starts concurrent requests at once with no queue when no load flag is given', async () => {
    const ttftMs = 150
    const emulator = await emulatorFor({ ttftMs, recordEventTimes: true })
    const body = chatBody('reasoning_tokens=1 content_tokens=1', { stream: true })
    const texts = await Promise.all([1, 2].map(async () => (await post(emulator, '/v1/chat/completions', body)).text()))
    const [first, second] = await Promise.all(texts.map(async (text) => (await eventTimes(emulator, text))[0] ?? 0))
    expect(Math.abs((first ?? 0) - (second ?? 0))).toBeLessThan(ttftMs - 50) // queued, they would be ttft apart
    expect(emulator.stats()).toMatchObject({ maxInFlight: 2, completed: 2 })
    expect(emulator.load()).toMatchObject({ maxWaiting: 0, running: 0, waiting: 0 })
    const text = await metrics(emulator)
    expect(metric(text, 'vllm:request_queue_time_seconds_count')).toBe(2)
    expect(text).toContain(`vllm:request_queue_time_seconds_sum${LABELS} 0.0\n`)
  })
})

describe('load-model CLI flags', () => {
  const ROOT = fileURLToPath(new URL('../..', import.meta.url))
  const run = (args: string[]) => {
    const child = spawn(`${ROOT}node_modules/.bin/node`, [`${ROOT}gpu-backend/emulator/main.ts`, '--port', '0', ...args], { cwd: ROOT })
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    return child
  }

  it('passes the flags to the options', async () => {
    const child = run([
      '--max-num-seqs',
      '3',
      '--prefill-ms-per-token',
      '0.5',
      '--batch-itl-ms-per-seq',
      '2',
      '--prefix-cache-tokens',
      '1000',
      '--kv-cache-tokens',
      '5000',
    ])
    let stdout = ''
    while (!stdout.includes('\n')) stdout += String((await once(child.stdout, 'data'))[0])
    const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1] ?? ''
    const options = await (await fetch(`${url}/emulator/config`, { method: 'POST', body: '{}' })).json()
    expect(options).toMatchObject({
      maxNumSeqs: 3,
      prefillMsPerToken: 0.5,
      batchItlMsPerSeq: 2,
      prefixCacheTokens: 1000,
      kvCacheTokens: 5000,
    })
  })

  it('refuses a bad value with exit code 2', async () => {
    for (const args of [
      ['--max-num-seqs', '0'],
      ['--prefill-ms-per-token', 'fast'],
    ]) {
      const child = run(args)
      const [code] = (await once(child, 'exit')) as [number | null]
      expect(code).toBe(2)
    }
  })
})
