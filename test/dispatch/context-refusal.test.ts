import { describe, expect, it } from 'vitest'
import { readContextRefusal, roomLeft } from '../../src/dispatch/context-refusal.ts'

// v0.11.0's texts, as `serving_engine.py` _validate_input formats them and chat's f"{e} {e.__cause__}" ends them.
const tooLarge = (m: number, n: number, limit = 4096) =>
  `'max_tokens' or 'max_completion_tokens' is too large: ${m}. This model's maximum context length is ${limit} tokens and your request has ${n} input tokens (${m} > ${limit} - ${n}). None`
const promptTooLong = (n: number) =>
  `This model's maximum context length is 4096 tokens. However, your request has ${n} input tokens. Please reduce the length of the input messages. None`

describe('readContextRefusal', () => {
  it("reads v0.11.0's max_tokens-too-large text, and the room it leaves", () => {
    const refusal = readContextRefusal(tooLarge(4000, 104))
    expect(refusal).toEqual({ kind: 'max_tokens_too_large', maxModelLen: 4096, promptTokens: 104, maxTokens: 4000 })
    expect(roomLeft(refusal!)).toBe(3992)
  })

  it('reads the text without the trailing " None" and with another context length', () => {
    expect(readContextRefusal(tooLarge(9000, 10, 8192).replace(/ None$/, ''))).toMatchObject({
      maxModelLen: 8192,
      promptTokens: 10,
      maxTokens: 9000,
    })
  })

  it("reads v0.11.0's prompt-too-long text", () => {
    expect(readContextRefusal(promptTooLong(5000))).toEqual({ kind: 'prompt_too_long', maxModelLen: 4096, promptTokens: 5000 })
  })

  it('reads the v0.10.1-and-earlier texts', () => {
    const both =
      "This model's maximum context length is 4096 tokens. However, you requested 4200 tokens (200 in the messages, 4000 in the completion). Please reduce the length of the messages or completion."
    expect(readContextRefusal(both)).toEqual({ kind: 'max_tokens_too_large', maxModelLen: 4096, promptTokens: 200, maxTokens: 4000 })
    const prompt =
      "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens in the messages, Please reduce the length of the messages."
    expect(readContextRefusal(prompt)).toEqual({ kind: 'prompt_too_long', maxModelLen: 4096, promptTokens: 5000 })
  })

  it('gives a room below 1 when the prompt alone fills the context', () => {
    expect(roomLeft(readContextRefusal(tooLarge(10, 4096))!)).toBe(0)
  })

  it.each([
    ['another 400', 'top_p must be in (0, 1], got 0.'],
    ['an empty text', ''],
    [
      'the numbers missing',
      "'max_tokens' or 'max_completion_tokens' is too large: . This model's maximum context length is  tokens and your request has  input tokens",
    ],
    [
      'a negative count',
      "'max_tokens' or 'max_completion_tokens' is too large: -5. This model's maximum context length is 4096 tokens and your request has 3 input tokens",
    ],
    ['a number too long to be exact', tooLarge(4000, Number('9'.repeat(20)))],
    ['a cut-off text', "'max_tokens' or 'max_completion_tokens' is too large: 4000. This model's maximum"],
    [
      'different wording',
      "max_tokens is too large: 4000. This model's maximum context length is 4096 tokens and your request has 3 input tokens",
    ],
  ])('reads no refusal from %s', (_, text) => {
    expect(readContextRefusal(text)).toBeNull()
  })
})

// v0.20.2's texts, as vllm/renderers/params.py TokenizeParams words them (_token_len_check,
// _text_len_check, __post_init__).
const v0202 = (output: number, prompt: number, atLeast = false, limit = 4096) => {
  const q = atLeast ? 'at least ' : ''
  return (
    `This model's maximum context length is ${limit} tokens. However, you requested ${output} output tokens and your prompt contains ` +
    `${q}${prompt} input tokens, for a total of ${q}${prompt + output} tokens. Please reduce the length of the input prompt or the number of requested output tokens.`
  )
}

describe("readContextRefusal on vLLM v0.20.2's texts", () => {
  it('reads an exact prompt count and the room it leaves', () => {
    const refusal = readContextRefusal(v0202(4000, 104))
    expect(refusal).toEqual({ kind: 'max_tokens_too_large', maxModelLen: 4096, promptTokens: 104, maxTokens: 4000 })
    expect(roomLeft(refusal!)).toBe(3992)
  })

  it('marks an "at least" count (the tokenizer stopped at max_model_len - O + 1) as a lower bound', () => {
    expect(readContextRefusal(v0202(4090, 7, true))).toEqual({
      kind: 'max_tokens_too_large',
      maxModelLen: 4096,
      promptTokens: 7,
      maxTokens: 4090,
      promptAtLeast: true,
    })
  })

  it('reads a prompt that fills the context alone as too long', () => {
    expect(readContextRefusal(v0202(0, 5000))).toEqual({ kind: 'prompt_too_long', maxModelLen: 4096, promptTokens: 5000 })
    expect(readContextRefusal(v0202(0, 4097, true))).toEqual({ kind: 'prompt_too_long', maxModelLen: 4096, promptTokens: 4097 })
  })

  it('reads the characters text and the output-over-context text as a too-large max_tokens of unknown room', () => {
    const characters =
      "This model's maximum context length is 4096 tokens. However, you requested 4000 output tokens and your prompt contains 20000 characters " +
      '(more than 12288 characters, which is the upper bound for 96 input tokens). Please reduce the length of the input prompt or the number of requested output tokens.'
    expect(readContextRefusal(characters)).toEqual({
      kind: 'max_tokens_too_large',
      maxModelLen: 4096,
      promptTokens: 97,
      maxTokens: 4000,
      promptAtLeast: true,
    })
    const over = 'max_tokens=5000 cannot be greater than max_model_len=max_total_tokens=4096. Please request fewer output tokens.'
    expect(readContextRefusal(over)).toEqual({
      kind: 'max_tokens_too_large',
      maxModelLen: 4096,
      promptTokens: 0,
      maxTokens: 5000,
      promptAtLeast: true,
    })
  })
})
