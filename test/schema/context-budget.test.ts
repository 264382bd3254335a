import { describe, expect, it } from 'vitest'
import type { ChatRequest } from '../../src/schema/chat-request.ts'
import { applyContextBudget } from '../../src/schema/context-budget.ts'
import { estimatePromptTokens } from '../../src/schema/token-estimate.ts'
import { chatBody, emulatorStats, postChat, recordedRequests } from '../support/worker.ts'

const request = (text: string, extra: Partial<ChatRequest> = {}): ChatRequest => ({ messages: [{ role: 'user', content: text }], ...extra })
const budget = { maxModelLen: 100, maxOutputTokens: null }

describe('applyContextBudget', () => {
  it('leaves a request that fits alone', () => {
    const input = request('hello', { max_tokens: 10 })
    expect(applyContextBudget(input, budget).request).toBe(input)
  })

  it('lowers max_tokens (or max_completion_tokens) so prompt plus output fits', () => {
    const prompt = estimatePromptTokens(['hello'])
    expect(applyContextBudget(request('hello', { max_tokens: 500 }), budget).request.max_tokens).toBe(100 - prompt)
    const lowered = applyContextBudget(request('hello', { max_completion_tokens: 500 }), budget).request
    expect(lowered.max_tokens).toBe(100 - prompt)
    expect(lowered).not.toHaveProperty('max_completion_tokens')
  })

  it("caps the output at the key's max output tokens", () => {
    expect(applyContextBudget(request('hello'), { maxModelLen: 4096, maxOutputTokens: 64 }).request.max_tokens).toBe(64)
  })

  it('refuses a prompt that alone does not fit with 400 context_length_exceeded', () => {
    expect(() => applyContextBudget(request('word '.repeat(400)), budget)).toThrow(
      expect.objectContaining({ status: 400, code: 'context_length_exceeded', param: 'messages' }),
    )
  })
})

describe('the context budget on the request path', () => {
  it('refuses an oversized prompt before any backend is called', async () => {
    const before = (await emulatorStats()).requests
    const response = await postChat(chatBody('lorem ipsum '.repeat(3000)))
    expect(response.status).toBe(400)
    expect((await emulatorStats()).requests).toBe(before)
  })

  it('sends the backend a max_tokens that fits the 4096-token context', async () => {
    await (await postChat(chatBody('Hi', { max_tokens: 100_000 }))).text()
    const sent = (await recordedRequests()).at(-1)?.body as { max_tokens: number }
    expect(sent.max_tokens).toBe(4096 - estimatePromptTokens(['Hi']))
  })
})
