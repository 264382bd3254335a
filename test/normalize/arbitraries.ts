import fc from 'fast-check'
import { MATH_DIRECTIVE, RULE_NAMES, type NormalizeOptions, type RuleName } from '../../src/normalize/index.ts'
import type { ChatMessage, ChatRequest } from '../../src/schema/chat-request.ts'

// Pieces chosen to hit the rules' edges: think tags (whole, split, nested, and a block ending
// right before a combining mark), combining marks alone and after a base, NFD and NFC forms of
// the same letters, NFC singletons (Ohm, Greek question mark), a ">" that composes with U+0338,
// math that triggers the directive, the directive itself, and the prefill text.
const FRAGMENTS = [
  '<think>',
  '</think>',
  '<thi',
  'nk>',
  '<think>\n',
  '<think>r</think>\u0301',
  '\n',
  '\n\n',
  ' ',
  '\t',
  'e\u0301',
  'é',
  '\u0301',
  '\u0327\u0301',
  'A\u030a',
  '\u212b',
  '\u2126',
  '\u037e',
  '\u1100\u1161',
  '가',
  '>\u0338',
  '12 * 7',
  'x^2',
  '\\frac{1}{2}',
  'solve',
  'how many',
  ' 3 ',
  MATH_DIRECTIVE,
  'Hello',
  'a',
]

const piece = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...FRAGMENTS) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 3 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 3 }) },
)

export const text = fc.array(piece, { maxLength: 6 }).map((pieces) => pieces.join(''))

const content = fc.oneof(
  { weight: 3, arbitrary: text },
  {
    weight: 1,
    arbitrary: fc.array(
      text.map((part) => ({ type: 'text' as const, text: part })),
      { maxLength: 3 },
    ),
  },
)

// Records get ordinary prototypes, as parsed JSON has, so structuredClone copies compare equal.
const systemMessage: fc.Arbitrary<ChatMessage> = fc.record({ role: fc.constant('system' as const), content }, { noNullPrototype: true })
const userMessage: fc.Arbitrary<ChatMessage> = fc.record(
  { role: fc.constant('user' as const), content, name: fc.constantFrom('ann', 'bob') },
  { requiredKeys: ['role', 'content'], noNullPrototype: true },
)
const assistantMessage: fc.Arbitrary<ChatMessage> = fc.record(
  {
    role: fc.constant('assistant' as const),
    content: fc.option(content, { nil: null }),
    reasoning_content: fc.option(text, { nil: null }),
  },
  { requiredKeys: ['role'], noNullPrototype: true },
)
const prefill: ChatMessage = { role: 'assistant', content: '<think>\n' }

const unsetOr = <T>(value: fc.Arbitrary<T>) => fc.oneof(value, fc.constant(null), fc.constant(undefined))

export const chatRequest: fc.Arbitrary<ChatRequest> = fc
  .record(
    {
      messages: fc.array(fc.oneof(systemMessage, userMessage, userMessage, assistantMessage), {
        minLength: 1,
        maxLength: 6,
      }),
      endsWithPrefill: fc.boolean(),
      temperature: unsetOr(fc.double({ min: 0, max: 2, noNaN: true })),
      top_p: unsetOr(fc.double({ min: 0, max: 1, noNaN: true })),
    },
    { requiredKeys: ['messages', 'endsWithPrefill'], noNullPrototype: true },
  )
  .map(({ endsWithPrefill, messages, ...sampling }) => ({
    model: 'deepseek-r1',
    messages: endsWithPrefill ? [...messages, prefill] : messages,
    ...sampling,
  }))

const switches = Object.fromEntries(RULE_NAMES.map((name) => [name, fc.boolean()])) as Record<RuleName, fc.Arbitrary<boolean>>

export const normalizeOptions: fc.Arbitrary<NormalizeOptions> = fc.record({
  rules: fc.record(switches),
  templateAddsThink: fc.boolean(),
})

/** A message's text as the rules see it: parts joined by newlines; '' when it has none. */
export function textOf(message: ChatMessage): string {
  const { content } = message
  if (content == null) return ''
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n')
}

export function countDirectives(message: ChatMessage): number {
  return textOf(message).split(MATH_DIRECTIVE).length - 1
}
