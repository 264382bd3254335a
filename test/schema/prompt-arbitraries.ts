// Prompts of the kinds real callers send, for the context-budget property test: the model's main
// use (math), and the kinds the gateway's estimate gets most wrong (code, hex ids, base64, CJK,
// emoji, JSON), alone or mixed, in one turn or many, sized from a line to past the context.
import fc from 'fast-check'

const repeatTo = (unit: fc.Arbitrary<string>, max: number) => fc.array(unit, { minLength: 1, maxLength: max }).map((parts) => parts.join(''))

const math = fc
  .tuple(fc.integer({ min: 1, max: 99 }), fc.integer({ min: -999, max: 999 }), fc.integer({ min: -9999, max: 9999 }), fc.constantFrom('x', 'y', 'n'))
  .map(([a, b, c, v]) => `Solve for ${v}: ${a}${v}^2 + ${b}${v} - ${c} = 0. What is the sum of the roots, as \\frac{p}{q}?`)

const identifier = fc.stringMatching(/^[a-z][a-zA-Z0-9_]{0,12}$/)
const codeLine = fc
  .tuple(fc.nat(4), identifier, identifier, fc.integer({ min: 0, max: 4096 }))
  .map(([depth, a, b, n]) => `${'    '.repeat(depth)}if (${a}.${b}(${n}) !== null) { return ${a}[${n}] ?? 0x${n.toString(16)}; }\n`)
const code = repeatTo(codeLine, 120)

const hexId = fc.uint8Array({ minLength: 4, maxLength: 32 }).map((bytes) => Buffer.from(bytes).toString('hex'))
const hex = repeatTo(hexId.map((id) => `${id} `), 300)

const base64 = fc.uint8Array({ minLength: 1, maxLength: 6000 }).map((bytes) => Buffer.from(bytes).toString('base64'))

const cjkChar = fc.integer({ min: 0x4e00, max: 0x9fff }).map((code) => String.fromCodePoint(code))
const cjk = repeatTo(fc.oneof(cjkChar, fc.constantFrom('，', '。', '？', '的', '是')), 3000)

const emojiChar = fc.integer({ min: 0x1f300, max: 0x1faff }).map((code) => String.fromCodePoint(code))
const emoji = repeatTo(fc.oneof(emojiChar, fc.constant('👍🏽'), fc.constant('👨‍👩‍👧'), fc.constant(' ')), 1500)

const json = fc.json({ maxDepth: 4 })

const prose = fc.lorem({ maxCount: 300, mode: 'sentences' })

/** One message's text: a kind, or several kinds mixed. */
export const promptText = fc.oneof(
  math,
  code,
  hex,
  base64,
  cjk,
  emoji,
  json,
  prose,
  fc.array(fc.oneof(math, code, hex, base64, cjk, emoji, json, prose), { minLength: 2, maxLength: 4 }).map((parts) => parts.join('\n\n')),
)

export type TestMessage = { role: 'system' | 'user' | 'assistant'; content: string }

/** A conversation as clients send it: an optional system prompt, turns, ending with the user. */
export const conversation: fc.Arbitrary<TestMessage[]> = fc
  .tuple(
    fc.option(promptText, { nil: null }),
    fc.array(fc.tuple(promptText, fc.tuple(fc.option(promptText, { nil: null }), promptText)), { maxLength: 3 }),
    promptText,
  )
  .map(([system, turns, last]) => [
    ...(system === null ? [] : [{ role: 'system' as const, content: system }]),
    ...turns.flatMap(([user, [reasoning, answer]]) => [
      { role: 'user' as const, content: user },
      { role: 'assistant' as const, content: reasoning === null ? answer : `<think>\n${reasoning}\n</think>\n\n${answer}` },
    ]),
    { role: 'user' as const, content: last },
  ])
