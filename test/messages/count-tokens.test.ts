import { describe, expect, it } from 'vitest'
import { tokenizeBody } from '../../src/messages/count-tokens.ts'

describe('tokenizeBody', () => {
  it("asks vLLM's /tokenize for the chat messages with the generation prompt", () => {
    const messages = [{ role: 'user' as const, content: 'Hi' }]
    expect(tokenizeBody({ messages }, 'served')).toEqual({ model: 'served', messages, add_generation_prompt: true })
  })

  it('continues a prefill as the chat request would (the prompt rules set it)', () => {
    const messages = [
      { role: 'user' as const, content: 'Hi' },
      { role: 'assistant' as const, content: '<think>\n' },
    ]
    expect(tokenizeBody({ messages, continue_final_message: true, add_generation_prompt: false }, 'served')).toEqual({
      model: 'served',
      messages,
      add_generation_prompt: false,
      continue_final_message: true,
    })
  })
})
