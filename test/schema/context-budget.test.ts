import { describe, expect, it } from 'vitest'
import type { ChatRequest } from '../../src/schema/chat-request.ts'
import { applyContextBudget } from '../../src/schema/context-budget.ts'
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
    const input = request('hello', { max_tokens: 500 })
    expect(applyContextBudget(input, noCap).request).toBe(input)
    const completion = request('hello', { max_completion_tokens: 500 })
    expect(applyContextBudget(completion, noCap).request).toBe(completion)
  })

  it('never refuses a prompt, however long the estimate says it is', () => {
    const long = request('word '.repeat(400))
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
    const long = applyContextBudget(request('word '.repeat(400)), noCap)
    expect(long.reserveTokens).toBe(long.promptTokens)
    expect(applyContextBudget(request('hello', { max_tokens: 100_000 }), noCap).reserveTokens).toBe(prompt + 100)
  })
})
