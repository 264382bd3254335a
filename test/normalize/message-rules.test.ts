import { describe, expect, it } from 'vitest'
import { MATH_DIRECTIVE } from '../../src/normalize/index.ts'
import { assistant, request, system, user, withRules } from './helpers.ts'

describe('text parts', () => {
  it('are flattened to one string joined by newlines, without reporting a rule', () => {
    const input = request([
      user([
        { type: 'text', text: 'first' },
        { type: 'text', text: 'second' },
      ]),
    ])
    expect(withRules(input, [])).toEqual({ request: request([user('first\nsecond')]), applied: [] })
  })
})

describe('nfc', () => {
  const decomposed = request([user('cafe\u0301 \u1100\u1161'), assistant('A\u030a', { reasoning_content: 'n\u0303' })])

  it('composes every text to NFC when on', () => {
    const { request: out, applied } = withRules(decomposed, ['nfc'])
    expect(out.messages).toEqual([user('café 가'), assistant('Å', { reasoning_content: 'ñ' })])
    expect(applied).toEqual(['nfc'])
  })

  it('leaves decomposed text alone when off', () => {
    expect(withRules(decomposed, []).request).toEqual(decomposed)
  })
})

describe('strip_reasoning', () => {
  const history = request([
    user('Hi'),
    assistant('<think>\nThe user greets me.\n</think>\n\nHello!', { reasoning_content: 'The user greets me.' }),
    assistant('counting to three</think>\n\nThree.'),
    assistant('Before <think>aside</think>after'),
    user('Again'),
  ])

  it('removes reasoning_content, think blocks and a leading unterminated reasoning prefix', () => {
    const { request: out, applied } = withRules(history, ['strip_reasoning'])
    expect(out.messages).toStrictEqual([
      user('Hi'),
      { role: 'assistant', content: 'Hello!' },
      { role: 'assistant', content: 'Three.' },
      { role: 'assistant', content: 'Before after' },
      user('Again'),
    ])
    expect(applied).toEqual(['strip_reasoning'])
  })

  it('leaves answers without reasoning as they are, whitespace included', () => {
    const input = request([user('Hi'), assistant('  Hello!\n'), assistant(null), user('Again')])
    expect(withRules(input, ['strip_reasoning'])).toEqual({ request: input, applied: [] })
  })

  it('composes what cutting a block brings together, when nfc is on too', () => {
    const input = request([user('Hi'), assistant('cafe<think>r</think>\u0301')])
    const { request: out } = withRules(input, ['nfc', 'strip_reasoning'])
    expect(out.messages[1]).toEqual(assistant('café'))
  })

  it('keeps earlier reasoning when off', () => {
    expect(withRules(history, []).request).toEqual(history)
  })
})

describe('fold_system', () => {
  it('moves system texts to the front of the first user message', () => {
    const input = request([system('Be brief.'), user('Q1'), assistant('A1'), system('  '), system('Use French.'), user('Q2')])
    const { request: out, applied } = withRules(input, ['fold_system'])
    expect(out.messages).toEqual([user('Be brief.\n\nUse French.\n\nQ1'), assistant('A1'), user('Q2')])
    expect(applied).toEqual(['fold_system'])
  })

  it('turns system texts into a first user message when there is none', () => {
    const { request: out } = withRules(request([system('Say hi.'), assistant('Hi')]), ['fold_system'])
    expect(out.messages).toEqual([user('Say hi.'), assistant('Hi')])
  })

  it('keeps system messages when off', () => {
    const input = request([system('Be brief.'), user('Q')])
    expect(withRules(input, []).request).toEqual(input)
  })
})

describe('merge_consecutive', () => {
  const input = request([user('a'), user('b'), assistant('x'), assistant(null), assistant('y'), user('c')])

  it('merges runs of one role into one message, texts as paragraphs', () => {
    const { request: out, applied } = withRules(input, ['merge_consecutive'])
    expect(out.messages).toEqual([user('a\n\nb'), assistant('x\n\ny'), user('c')])
    expect(applied).toEqual(['merge_consecutive'])
  })

  it('keeps runs apart when off', () => {
    expect(withRules(input, []).request).toEqual(input)
  })
})

describe('math_directive', () => {
  it('appends the directive to a last user message that reads as math', () => {
    const { request: out, applied } = withRules(request([user('What is 12 * 7?')]), ['math_directive'])
    expect(out.messages).toEqual([user(`What is 12 * 7?\n${MATH_DIRECTIVE}`)])
    expect(applied).toEqual(['math_directive'])
  })

  it('never adds it to a message that already has it', () => {
    const input = request([user(`Solve x^2 = 4. ${MATH_DIRECTIVE} Thanks.`)])
    expect(withRules(input, ['math_directive'])).toEqual({ request: input, applied: [] })
  })

  it('looks only at the last user message', () => {
    const input = request([user('What is 12 * 7?'), assistant('84'), user('Thanks, write a poem now.')])
    expect(withRules(input, ['math_directive']).applied).toEqual([])
  })

  it('sees the merged last turn when merging runs first', () => {
    const input = request([user('Here is a puzzle.'), user('What is 12 * 7?')])
    const { request: out } = withRules(input, ['merge_consecutive', 'math_directive'])
    expect(out.messages).toEqual([user(`Here is a puzzle.\n\nWhat is 12 * 7?\n${MATH_DIRECTIVE}`)])
  })

  it('adds nothing when off', () => {
    const input = request([user('What is 12 * 7?')])
    expect(withRules(input, []).request).toEqual(input)
  })
})
