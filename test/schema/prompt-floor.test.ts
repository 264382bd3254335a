// The prompt-token floor on fixed inputs. Each case gives the floor and the exact count of the real
// tokenizer and template (the emulator's, measured once; test/schema-node/ checks the bound against
// that tokenizer on random inputs).
import { describe, expect, it } from 'vitest'
import { LONGEST_TOKEN_BYTES, promptTokenFloor, textTokenFloor, type FloorMessage } from '../../src/schema/prompt-floor.ts'

describe('textTokenFloor', () => {
  it.each([
    // [text, floor, exact]
    ['', 0, 0],
    ['Hi', 1, 1],
    ['The quick brown fox jumps over the lazy dog.', 9, 10],
    ['lorem ipsum '.repeat(50), 100, 102],
    ["don't won't I'm", 6, 6],
    // Every digit is a token of its own.
    ['3.14159 + 2 = 5.14159', 14, 19],
    ['def f(x):\n    return x * 2\n', 6, 11],
    ['{"a": [1, 2, 3], "b": {"c": "d"}}', 7, 21],
    // Not ASCII: at least one token for the text, no more.
    ['你好世界', 1, 2],
    ['ÄÖÜ straße', 1, 6],
    // An added token inside the text is one token, however many words it looks like.
    ['<｜User｜>hello', 2, 2],
    ['<|fim_prefix|>abc', 2, 2],
    ['<think>\nabc\n</think>\n\nanswer', 4, 7],
    // 300 spaces: only bytes bound them, 128 to a token at most.
    [' '.repeat(300), 3, 3],
  ])('%j: floor %i (exact %i)', (text, floor, exact) => {
    expect(textTokenFloor(text)).toBe(floor)
    expect(floor).toBeLessThanOrEqual(exact)
  })

  it('reads a span with whitespace, another "<" or no ">" as ordinary text', () => {
    expect(textTokenFloor('<div class=a>')).toBe(3)
    expect(textTokenFloor('<a <b>')).toBe(2)
    expect(textTokenFloor('<tool_call')).toBe(2)
    // No letter inside: no added token, so the digits count (and the other bytes, one token at least).
    expect(textTokenFloor('<12>')).toBe(3)
  })

  it('bounds long runs of one character by bytes', () => {
    expect(textTokenFloor('='.repeat(LONGEST_TOKEN_BYTES * 10))).toBe(10)
    expect(textTokenFloor('='.repeat(LONGEST_TOKEN_BYTES * 10 + 1))).toBe(11)
    expect(textTokenFloor('7'.repeat(1000))).toBe(1000)
  })
})

describe('promptTokenFloor', () => {
  const user = (content: FloorMessage['content']): FloorMessage => ({ role: 'user', content })
  const assistant = (content: FloorMessage['content']): FloorMessage => ({ role: 'assistant', content })

  it('counts "Hi" as vLLM does: BOS, <｜User｜>, Hi, <｜Assistant｜>, <think>, "\\n"', () => {
    expect(promptTokenFloor([user('Hi')])).toBe(6)
  })

  it("counts only the last system message's text, and an assistant turn's answer after </think>", () => {
    const messages = [
      { role: 'system', content: 'one two three four' },
      { role: 'system', content: 'Be brief.' },
      user('Hi'),
      assistant('<think>many many words of reasoning</think>Hello!'),
      user('What is 2+2?'),
    ]
    // 1 + "Be brief." 2 + (1 + 1) + (2 + 1) + (1 + "What is 2+2?" 4) + 3. Exact: 21.
    expect(promptTokenFloor(messages)).toBe(16)
  })

  it('joins text parts with "\\n", as vLLM does for this template', () => {
    expect(promptTokenFloor([user([{ text: 'one' }, { text: 'two' }])])).toBe(promptTokenFloor([user('one\ntwo')]))
  })

  it('counts nothing for an assistant message without content, nor for names', () => {
    expect(promptTokenFloor([user('Hi'), assistant(null), user('Hi')])).toBe(8)
    expect(promptTokenFloor([{ role: 'user', content: 'Hi', name: 'a very long name indeed' } as FloorMessage])).toBe(6)
  })

  it('adds a template token per message: 10,000 turns are over any context this model has', () => {
    const messages = Array.from({ length: 10_000 }, (_, i) => (i % 2 === 0 ? user('a') : assistant('')))
    expect(promptTokenFloor(messages)).toBe(4 + 2 * 10_000)
  })

  it('leaves a continued final message open: its role token only, no EOS, no generation prompt', () => {
    const prefilled = [user('Hi'), assistant('<think>\n')]
    expect(promptTokenFloor(prefilled, { continueFinalMessage: true, addGenerationPrompt: false })).toBe(4)
    expect(promptTokenFloor([user('Hi')], { addGenerationPrompt: false })).toBe(3)
    // A final system message is rendered first, so the cut after it may keep nothing else.
    expect(promptTokenFloor([user('Hi'), { role: 'system', content: 'x' }], { continueFinalMessage: true })).toBe(1)
  })
})
