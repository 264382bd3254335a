import { describe, expect, it } from 'vitest'
import type { ApiError } from '../../src/errors.ts'
import type { UpstreamChatRequest } from '../../src/normalize/index.ts'
import type { ChatRequest } from '../../src/schema/chat-request.ts'
import { applyContextBudget, type Budget } from '../../src/schema/context-budget.ts'
import { estimatePromptTokens } from '../../src/schema/token-estimate.ts'

const request = (text: string, extra: Partial<ChatRequest> = {}): ChatRequest => ({ messages: [{ role: 'user', content: text }], ...extra })
const noCap = { maxModelLen: 100, maxOutputTokens: null }

describe('applyContextBudget', () => {
  it('writes no max_tokens the client did not ask for', () => {
    const input = request('hello')
    const budgeted = applyContextBudget(input, noCap)
    expect(budgeted.request).toBe(input)
    expect(budgeted.request).not.toHaveProperty('max_tokens')
    expect(budgeted.gatewayMaxTokens).toBe(false)
  })

  it("leaves the client's max_tokens as sent, even when the estimate says it does not fit (vLLM decides)", () => {
    // The estimate counts each CJK character as a token (over 80 here); the floor only the piece's one.
    const input = request('你好'.repeat(40), { max_tokens: 50 })
    expect(estimatePromptTokens(['你好'.repeat(40)]) + 50).toBeGreaterThan(noCap.maxModelLen)
    expect(applyContextBudget(input, noCap).request).toBe(input)
    const completion = request('你好'.repeat(40), { max_completion_tokens: 50 })
    expect(applyContextBudget(completion, noCap).request).toBe(completion)
  })

  it('never refuses a prompt on its estimate, however long the estimate says it is', () => {
    const long = request('你好'.repeat(60))
    expect(estimatePromptTokens(['你好'.repeat(60)])).toBeGreaterThan(noCap.maxModelLen)
    expect(applyContextBudget(long, noCap).request).toBe(long)
  })

  it("sends the key's output cap when the client asked for nothing or for more", () => {
    const cap = { maxModelLen: 4096, maxOutputTokens: 64 }
    expect(applyContextBudget(request('hello'), cap)).toMatchObject({ request: { max_tokens: 64 }, gatewayMaxTokens: true })
    const more = applyContextBudget(request('hello', { max_completion_tokens: 500 }), cap)
    expect(more).toMatchObject({ request: { max_tokens: 64 }, gatewayMaxTokens: true })
    expect(more.request).not.toHaveProperty('max_completion_tokens')
  })

  it("keeps a client max_tokens at or under the cap as the client's own", () => {
    const input = request('hello', { max_tokens: 64 })
    expect(applyContextBudget(input, { maxModelLen: 4096, maxOutputTokens: 64 })).toMatchObject({ request: input, gatewayMaxTokens: false })
  })

  it('refuses min_tokens above the key cap, naming min_tokens', () => {
    expect(() => applyContextBudget(request('hello', { min_tokens: 100 }), { maxModelLen: 4096, maxOutputTokens: 64 })).toThrow(
      expect.objectContaining({ status: 400, param: 'min_tokens' }),
    )
  })

  it('reserves the estimate plus max_tokens, or plus the rest of the context, per choice, never negative', () => {
    const prompt = estimatePromptTokens(['hello'])
    expect(applyContextBudget(request('hello', { max_tokens: 10 }), noCap).reserveTokens).toBe(prompt + 10)
    expect(applyContextBudget(request('hello'), noCap).reserveTokens).toBe(100)
    expect(applyContextBudget(request('hello', { max_tokens: 10, n: 3 }), noCap).reserveTokens).toBe(prompt + 30)
    const long = applyContextBudget(request('你好'.repeat(60)), noCap)
    expect(long.reserveTokens).toBe(long.promptTokens)
    // A key cap above the context (a client's own would be refused as certainly too large).
    expect(applyContextBudget(request('hello'), { maxModelLen: 100, maxOutputTokens: 100_000 }).reserveTokens).toBe(prompt + 100)
  })
})

describe('applyContextBudget: requests that certainly do not fit', () => {
  // Each user turn is at least its <｜User｜> and one token of text; the prompt adds BOS and the
  // generation prompt's three: 4 + 2 * turns, exactly what vLLM counts for these turns.
  const turns = (count: number, extra: Partial<ChatRequest> = {}): ChatRequest => ({
    messages: Array.from({ length: count }, (_, i) => (i % 2 === 0 ? { role: 'user', content: 'x' } : { role: 'assistant', content: '' })),
    ...extra,
  })
  const budget: Budget = { maxModelLen: 100, maxOutputTokens: null }
  const refusal = (body: ChatRequest, limits: Budget = budget) => {
    try {
      applyContextBudget(body, limits)
    } catch (error) {
      return error as ApiError
    }
    return null
  }

  it("refuses a prompt whose floor reaches the context, in vLLM's shape, worded for a bound", () => {
    // 48 turns: 4 + 2 * 48 = 100 tokens.
    const error = refusal(turns(48))
    expect(error).toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'messages' })
    expect(error?.message).toBe(
      "This model's maximum context length is 100 tokens. However, your request has at least 100 input tokens. " +
        'Please reduce the length of the input messages.',
    )
  })

  it('lets a prompt just under the context through', () => {
    expect(refusal(turns(47))).toBeNull()
  })

  it("refuses the client's max_tokens when the floor plus it exceeds the context, naming the field sent", () => {
    // 20 turns: 44 tokens at least; 57 > 100 - 44.
    const error = refusal(turns(20, { max_tokens: 57 }))
    expect(error).toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'max_tokens' })
    expect(error?.message).toBe(
      "'max_tokens' or 'max_completion_tokens' is too large: 57. This model's maximum context length is 100 tokens " +
        'and your request has at least 44 input tokens (57 > 100 - 44).',
    )
    expect(refusal(turns(20, { max_tokens: 56 }))).toBeNull()
    expect(refusal(turns(20, { max_tokens: 5, max_completion_tokens: 57 }))).toMatchObject({ param: 'max_completion_tokens' })
  })

  it("never refuses because of the key's cap, which the relay refits to vLLM's count", () => {
    const capped = { maxModelLen: 100, maxOutputTokens: 90 }
    expect(refusal(turns(20), capped)).toBeNull()
    expect(refusal(turns(20, { max_tokens: 95 }), capped)).toBeNull()
    // The prompt alone still cannot fit, whatever max_tokens.
    expect(refusal(turns(48), capped)).toMatchObject({ code: 'context_length_exceeded', param: 'messages' })
  })

  it('counts the prefilled "<think>\n" turn as left open (no EOS, no generation prompt)', () => {
    const prefilled = (count: number): UpstreamChatRequest => ({
      ...turns(count),
      messages: [...turns(count).messages, { role: 'assistant', content: '<think>\n' }],
      continue_final_message: true,
      add_generation_prompt: false,
    })
    // BOS + 2 per turn + the open <｜Assistant｜>: 49 turns are 100.
    expect(refusal(prefilled(49))).toMatchObject({ code: 'context_length_exceeded' })
    expect(refusal(prefilled(48))).toBeNull()
  })
})
