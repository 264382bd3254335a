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
