import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.ts'
import { readChunk } from '../../src/relay/chunk.ts'

const head = '"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m"'
const chunkWith = (delta: string) => `{${head},"choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":null}]}`

describe('readChunk', () => {
  it('passes a reasoning_content chunk (vLLM v0.7.2 to late 2025) through byte for byte', () => {
    const data = chunkWith('{"reasoning_content":"Okay"}')
    expect(readChunk(data)).toMatchObject({ kind: 'delta', data })
  })

  it('renames the 2026 `reasoning` field to reasoning_content', () => {
    const result = readChunk(chunkWith('{"reasoning":"Okay"}'))
    expect(result.kind === 'delta' && JSON.parse(result.data).choices[0].delta).toEqual({ reasoning_content: 'Okay' })
  })

  it('keeps one reasoning_content when the late-2025 era sends both fields', () => {
    const result = readChunk(chunkWith('{"reasoning":"Okay","reasoning_content":"Okay"}'))
    expect(result.kind === 'delta' && JSON.parse(result.data).choices[0].delta).toEqual({ reasoning_content: 'Okay' })
  })

  it('drops the null reasoning fields the late-2025 era puts on answer deltas', () => {
    const result = readChunk(chunkWith('{"content":"Hi","reasoning":null,"reasoning_content":null}'))
    expect(result.kind === 'delta' && JSON.parse(result.data).choices[0].delta).toEqual({ content: 'Hi' })
  })

  it('recognises the usage-only chunk', () => {
    const data = `{${head},"choices":[],"usage":{"prompt_tokens":3,"total_tokens":5,"completion_tokens":2}}`
    expect(readChunk(data)).toEqual({ kind: 'usage', data, usage: { prompt_tokens: 3, total_tokens: 5, completion_tokens: 2 } })
  })

  it('keeps a chunk that carries continuous usage next to its choices as a delta', () => {
    const data = `{${head},"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1}}`
    expect(readChunk(data).kind).toBe('delta')
  })

  it("turns vLLM's in-stream error into an ApiError with its status and message", () => {
    const result = readChunk('{"error": {"message": "engine died", "type": "InternalServerError", "param": null, "code": 500}}')
    expect(result.kind).toBe('error')
    const error = result.kind === 'error' ? result.error : null
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 500, message: 'engine died' })
  })

  it('recognises [DONE]', () => {
    expect(readChunk('[DONE]')).toEqual({ kind: 'done' })
  })

  it.each([['{"id":"chatcmpl-'], ['[1,2]'], ['"text"'], ['{"id":"x"}']])('rejects the malformed payload %s with a 502', (data) => {
    expect(() => readChunk(data)).toThrow(expect.objectContaining({ status: 502, code: 'upstream_malformed_event' }))
  })
})
