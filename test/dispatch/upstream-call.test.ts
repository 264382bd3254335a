import { describe, expect, it } from 'vitest'
import { ChunkReader } from '../../src/relay/chunk.ts'
import { UpstreamCall } from '../../src/dispatch/upstream-call.ts'

const readChunk = (data: string) => new ChunkReader().read(data)
const head = '"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m"'
const usage = (prompt: number, completion: number) =>
  `"usage":{"prompt_tokens":${prompt},"total_tokens":${prompt + completion},"completion_tokens":${completion}}`
const tokenChunk = (index: number, completion: number) =>
  readChunk(`{${head},"choices":[{"index":${index},"delta":{"content":"x"},"logprobs":null,"finish_reason":null}],${usage(7, completion)}}`)

function newCall(): UpstreamCall {
  const call = new UpstreamCall(undefined, { firstEventMs: 60_000, idleMs: 60_000 })
  call.end()
  return call
}

describe('UpstreamCall token accounting from continuous usage', () => {
  it('keeps the latest running count of a single choice', () => {
    const call = newCall()
    call.chunkArrived(tokenChunk(0, 1))
    call.chunkArrived(tokenChunk(0, 4))
    expect(call.used).toEqual({ promptTokens: 7, completionTokens: 4 })
  })

  it('adds up the choices of n > 1, whose running counts vLLM reports per choice', () => {
    const call = newCall()
    call.chunkArrived(tokenChunk(0, 1))
    call.chunkArrived(tokenChunk(1, 1))
    call.chunkArrived(tokenChunk(0, 2))
    call.chunkArrived(tokenChunk(1, 3))
    expect(call.used).toEqual({ promptTokens: 7, completionTokens: 5 })
  })

  it('takes the final usage chunk as the total it states', () => {
    const call = newCall()
    call.chunkArrived(tokenChunk(0, 2))
    call.chunkArrived(tokenChunk(1, 2))
    call.chunkArrived(readChunk(`{${head},"choices":[],${usage(7, 6)}}`))
    expect(call.used).toEqual({ promptTokens: 7, completionTokens: 6 })
  })

  it('ignores chunks without usage', () => {
    const call = newCall()
    call.chunkArrived(readChunk(`{${head},"choices":[{"index":0,"delta":{"content":"x"}}]}`))
    expect(call.used).toBeNull()
  })
})

describe('UpstreamCall after a verdict that blames nobody (the gateway lagged, the backend is busy)', () => {
  it('keeps waiting past the headers deadline and is stopped unexplained (no backend blamed) only at the first-event deadline', async () => {
    const stages: string[] = []
    const startedAt = Date.now()
    const call = new UpstreamCall(undefined, {
      headersMs: 20,
      firstEventMs: 300,
      idleMs: 60_000,
      judge: (stage) => {
        stages.push(stage)
        return Promise.resolve('nobody')
      },
    })
    await new Promise((resolve) => call.signal.addEventListener('abort', resolve))
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(300)
    expect(stages).toEqual(['headers', 'first_event'])
    expect(call.stopReason).toBe('deadline_unexplained')
    expect(call.missedDeadline).toBe(false)
  })

  it('streams on when the headers and the first event come after that verdict', async () => {
    const call = new UpstreamCall(undefined, {
      headersMs: 20,
      firstEventMs: 60_000,
      idleMs: 60_000,
      judge: () => Promise.resolve('nobody'),
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(call.stopReason).toBeNull()
    call.headersArrived()
    call.chunkArrived(tokenChunk(0, 1))
    expect(call.sawEvent).toBe(true)
    call.end()
    expect(call.stopReason).toBeNull()
  })
})
