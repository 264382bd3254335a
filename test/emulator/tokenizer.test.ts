// Prompt token counts as vLLM v0.11.0 makes them for DeepSeek-R1-Distill-Qwen: the model's chat
// template rendered, then the Qwen2 byte-level BPE with the distill's added tokens as single tokens.

import { beforeAll, describe, expect, it } from 'vitest'
import { countChatPromptTokens, countText, encodeText, loadTokenizer } from '../../gpu-backend/emulator/tokenizer.ts'
import { emulatorFor, MODEL, post } from './helpers.ts'

const user = (content: unknown) => ({ role: 'user', content })

beforeAll(() => loadTokenizer())

describe('prompt token counts', () => {
  it('counts "Hi" as one user message as 6 tokens: BOS, <｜User｜>, Hi, <｜Assistant｜>, <think>, \\n', () => {
    expect(countChatPromptTokens([user('Hi')])).toBe(6)
  })

  it('counts each R1-Distill added token as one token and BPE-encodes the text between them on its own', () => {
    expect(encodeText('<｜begin▁of▁sentence｜>Hi<｜User｜></think>')).toEqual([151646, 13048, 151644, 151649])
    expect(countText('\n\n  hello world')).toBe(4) // "\n\n", " ", " hello", " world": newline and indent runs are tokens
  })

  it('puts only the last system message right after BOS', () => {
    const twoSystems = [{ role: 'system', content: 'Be brief.' }, user('Hi'), { role: 'system', content: 'Be kind.' }]
    expect(countChatPromptTokens(twoSystems)).toBe(6 + countText('Be kind.'))
  })

  it('keeps only the text after the last </think> of an earlier assistant turn, closed by <｜end▁of▁sentence｜>', () => {
    const turn = { role: 'assistant', content: 'a</think>b</think>The answer is 4.' }
    // Hi turn (2 + BOS), assistant: <｜Assistant｜> + text + EOS, then the new user turn and the generation prompt
    const expected = 1 + 2 + (2 + countText('The answer is 4.')) + 2 + 3
    expect(countChatPromptTokens([user('Hi'), turn, user('Hi')])).toBe(expected)
  })

  it('joins the text parts of a content array with "\\n", as chat_utils.py does for a string-content template', () => {
    const parts = [
      { type: 'text', text: 'first' },
      { type: 'text', text: 'second' },
    ]
    expect(countChatPromptTokens([user(parts)])).toBe(countChatPromptTokens([user('first\nsecond')]))
  })

  it('reports the template count as usage.prompt_tokens of a chat completion', async () => {
    const emulator = await emulatorFor({ reasoningTokens: 0, contentTokens: 1 })
    const messages = [{ role: 'system', content: 'You are terse.' }, user('Solve for x: 3x^2 + 12x - 96 = 0.')]
    const response = await post(emulator, '/v1/chat/completions', { model: MODEL, messages })
    const body = (await response.json()) as { usage: { prompt_tokens: number } }
    expect(body.usage.prompt_tokens).toBe(countChatPromptTokens(messages))
  })

  it('tokenizes a /v1/completions string prompt with BOS added', async () => {
    const emulator = await emulatorFor({ contentTokens: 1 })
    const response = await post(emulator, '/v1/completions', { model: MODEL, prompt: 'Hi', max_tokens: 1 })
    const body = (await response.json()) as { usage: { prompt_tokens: number } }
    expect(body.usage.prompt_tokens).toBe(2)
  })
})
