import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { estimatePromptTokens, estimateTextTokens } from '../../src/schema/token-estimate.ts'

describe('estimateTextTokens', () => {
  it('counts English words at about one token per four letters', () => {
    expect(estimateTextTokens('The quick brown fox jumps over the lazy dog')).toBe(9)
  })

  it('counts every digit, since Qwen2 splits numbers into digits', () => {
    expect(estimateTextTokens('1234567')).toBe(7)
  })

  it('counts CJK characters one each and emoji two each (on the high side)', () => {
    expect(estimateTextTokens('你好世界')).toBe(4)
    expect(estimateTextTokens('🙂🙂')).toBe(4)
  })

  it('never decreases when text is appended (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' }), (a, b) => {
        expect(estimateTextTokens(a + b)).toBeGreaterThanOrEqual(estimateTextTokens(a))
      }),
      { numRuns: 500 },
    )
  })
})

describe('estimatePromptTokens', () => {
  it('adds the chat template: 3 per prompt and 4 per message', () => {
    expect(estimatePromptTokens([])).toBe(3)
    expect(estimatePromptTokens(['', ''])).toBe(11)
  })
})
