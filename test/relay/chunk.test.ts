import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.ts'
import { ChunkReader, isBackendFault } from '../../src/relay/chunk.ts'

/** One payload of a backend with a reasoning parser, read on its own. */
const readChunk = (data: string) => new ChunkReader().read(data)

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

  it("turns a backend's 5xx in-stream error into a 502 ApiError that keeps its message", () => {
    const result = readChunk('{"error": {"message": "engine died", "type": "InternalServerError", "param": null, "code": 500}}')
    expect(result.kind).toBe('error')
    const error = result.kind === 'error' ? result.error : null
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 502, message: 'engine died' })
  })

  it('recognises [DONE]', () => {
    expect(readChunk('[DONE]')).toEqual({ kind: 'done' })
  })

  it.each([['{"id":"chatcmpl-'], ['[1,2]'], ['"text"'], ['{"id":"x"}']])('rejects the malformed payload %s with a 502', (data) => {
    expect(() => readChunk(data)).toThrow(expect.objectContaining({ status: 502, code: 'upstream_malformed_event' }))
  })
})

const errorEvent = (message: string, code = 400) =>
  `{"error": {"message": ${JSON.stringify(message)}, "type": "BadRequestError", "param": null, "code": ${code}}}`
const statusOf = (data: string) => {
  const result = readChunk(data)
  return result.kind === 'error' ? result.error.status : null
}

describe("telling a backend's failure from the request's own in vLLM v0.11.0's 400 error events", () => {
  it('calls the dead-engine event a backend failure (502), though vLLM labels it BadRequestError 400', () => {
    expect(statusOf(errorEvent('EngineCore encountered an issue. See stack trace (above) for the root cause.'))).toBe(502)
  })

  it('calls the message-less EngineGenerateError a backend failure', () => {
    expect(statusOf(errorEvent(''))).toBe(502)
  })

  it('calls a request id collision a backend failure: another attempt has another id', () => {
    expect(statusOf(errorEvent('Request id chatcmpl-abc already running.'))).toBe(502)
  })

  it("keeps a validation error (a ValueError of the request) as the request's own 400", () => {
    expect(statusOf(errorEvent('Token id 999999 in logit_bias is out of vocabulary'))).toBe(400)
    expect(isBackendFault(400, 'The prompt is too long')).toBe(false)
  })

  it('keeps 429 and 503 as they are: the backend is busy, not broken', () => {
    expect(statusOf(errorEvent('busy', 429))).toBe(429)
    expect(statusOf(errorEvent('scaling', 503))).toBe(503)
  })
})

describe('ChunkReader for a backend without a reasoning parser', () => {
  const choice = (delta: string, finish: string | null = null, index = 0) =>
    `{${head},"choices":[{"index":${index},"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]}`
  const deltaOf = (result: ReturnType<ChunkReader['read']>) => (result.kind === 'delta' ? JSON.parse(result.data).choices[0].delta : null)

  it('leaves the role chunk byte for byte', () => {
    const data = choice('{"role":"assistant","content":""}')
    expect(new ChunkReader({ reasoningInContent: true }).read(data)).toMatchObject({ data })
  })

  it('moves content before </think> to reasoning_content and sends the transition delta with both', () => {
    const reader = new ChunkReader({ reasoningInContent: true })
    expect(deltaOf(reader.read(choice('{"content":"Okay"}')))).toEqual({ reasoning_content: 'Okay' })
    expect(deltaOf(reader.read(choice('{"content":" so.</think>\\n\\nThe"}')))).toEqual({ content: '\n\nThe', reasoning_content: ' so.' })
    const answer = choice('{"content":" end"}')
    expect(reader.read(answer)).toMatchObject({ data: answer })
  })

  it('keeps each choice of n > 1 apart', () => {
    const reader = new ChunkReader({ reasoningInContent: true })
    reader.read(choice('{"content":"a</think>A"}', null, 0))
    expect(deltaOf(reader.read(choice('{"content":"b"}', null, 1)))).toEqual({ reasoning_content: 'b' })
    expect(deltaOf(reader.read(choice('{"content":"c"}', null, 0)))).toEqual({ content: 'c' })
  })

  it('gives a held partial tag back as reasoning on the finish chunk', () => {
    const reader = new ChunkReader({ reasoningInContent: true })
    expect(deltaOf(reader.read(choice('{"content":"cut </th"}')))).toEqual({ reasoning_content: 'cut ' })
    expect(deltaOf(reader.read(choice('{"content":""}', 'length')))).toEqual({ reasoning_content: '</th' })
  })

  it('does nothing to a backend with the parser: content stays the answer', () => {
    const data = choice('{"content":"no tag here"}')
    expect(new ChunkReader().read(data)).toMatchObject({ data })
  })
})
