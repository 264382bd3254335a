// deepseek_r1_reasoning_parser.py extract_reasoning_content_streaming on the emulator's tokens.

import { describe, expect, it } from 'vitest'
import { parseStreamingDelta } from '../../gpu-backend/emulator/reasoning.ts'
import type { Token } from '../../gpu-backend/emulator/text.ts'

const word: Token = { kind: 'reasoning', text: ' so', id: 1 }
const end: Token = { kind: 'think_end', text: '</think>', id: 151649 }
const content: Token = { kind: 'content', text: '\n\nThe', id: 2 }

describe('the deepseek_r1 streaming parser', () => {
  it('shows nothing for </think> alone, reasoning before it and content after it', () => {
    expect(parseStreamingDelta('</think>', [end], false)).toBeNull()
    expect(parseStreamingDelta(' so', [word], false)).toEqual({ reasoning: ' so' })
    expect(parseStreamingDelta('\n\nThe', [content], true)).toEqual({ content: '\n\nThe' })
  })

  it('splits a merged delta at </think>, content null when nothing follows it', () => {
    expect(parseStreamingDelta(' so</think>\n\nThe', [word, end, content], false)).toEqual({ content: '\n\nThe', reasoning: ' so' })
    expect(parseStreamingDelta(' so</think>', [word, end], false)).toEqual({ content: null, reasoning: ' so' })
  })

  it('slices with find() = -1 when held-back text keeps </think> out of the delta, as Python does', () => {
    // delta_text[:-1] and delta_text[-1 + len("</think>"):]
    expect(parseStreamingDelta(' so</thi', [word, end], false)).toEqual({ content: 'i', reasoning: ' so</th' })
    expect(parseStreamingDelta(' 🙂x', [word, end], false)).toEqual({ content: null, reasoning: ' 🙂' })
  })
})
