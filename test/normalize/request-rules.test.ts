import { describe, expect, it } from 'vitest'
import { MATH_DIRECTIVE, normalizeChatRequest, RULE_NAMES, resolveRules } from '../../src/normalize/index.ts'
import { assistant, request, system, user, withRules } from './helpers.ts'

const PREFILL = { role: 'assistant', content: '<think>\n' } as const

describe('think_prefix', () => {
  const input = request([user('Hi')])

  it('adds a "<think>\\n" prefill for vLLM to continue when the template does not', () => {
    const { request: out, applied } = withRules(input, ['think_prefix'], false)
    expect(out).toEqual({
      ...input,
      messages: [user('Hi'), PREFILL],
      continue_final_message: true,
      add_generation_prompt: false,
    })
    expect(applied).toEqual(['think_prefix'])
  })

  it('does nothing when the template already ends the prompt with "<think>\\n"', () => {
    expect(withRules(input, ['think_prefix'], true)).toEqual({ request: input, applied: [] })
  })

  it('keeps a prefill the client sent, adding only the switches', () => {
    const { request: out } = withRules(request([user('Hi'), PREFILL]), ['think_prefix'], false)
    expect(out.messages).toEqual([user('Hi'), PREFILL])
    expect(out.continue_final_message).toBe(true)
  })

  it('shields a trailing prefill from merging and stripping', () => {
    const input2 = request([user('Hi'), assistant('Hello'), PREFILL])
    const { request: out } = withRules(input2, ['strip_reasoning', 'merge_consecutive', 'think_prefix'], false)
    expect(out.messages).toEqual([user('Hi'), assistant('Hello'), PREFILL])
  })

  it('adds nothing when off', () => {
    expect(withRules(input, [], false).request).toEqual(input)
  })
})

describe('temperature', () => {
  it.each([
    [undefined, 0.6],
    [null, 0.6],
    [0, 0.5],
    [1.3, 0.7],
    [0.55, 0.55],
  ])('turns %j into %j when on', (temperature, expected) => {
    expect(withRules(request([user('Hi')], { temperature }), ['temperature']).request.temperature).toBe(expected)
  })

  it('is not reported when the value is already in range', () => {
    expect(withRules(request([user('Hi')], { temperature: 0.7 }), ['temperature']).applied).toEqual([])
  })

  it('leaves the value alone when off', () => {
    expect(withRules(request([user('Hi')], { temperature: 1.3 }), []).request.temperature).toBe(1.3)
  })
})

describe('top_p', () => {
  it('defaults to 0.95 when unset and on', () => {
    const { request: out, applied } = withRules(request([user('Hi')], { top_p: null }), ['top_p'])
    expect(out.top_p).toBe(0.95)
    expect(applied).toEqual(['top_p'])
  })

  it("keeps the client's value", () => {
    const { request: out, applied } = withRules(request([user('Hi')], { top_p: 0.3 }), ['top_p'])
    expect(out.top_p).toBe(0.3)
    expect(applied).toEqual([])
  })

  it('stays unset when off', () => {
    expect(withRules(request([user('Hi')]), []).request).not.toHaveProperty('top_p')
  })
})

describe('normalizeChatRequest', () => {
  it('reports every rule that changed something, in RULE_NAMES order', () => {
    const input = request([system('S'), user('e\u0301'), assistant('<think>r</think>A'), user('x'), user('What is 2 * 3?')])
    const { applied } = normalizeChatRequest(input, { rules: resolveRules('all'), templateAddsThink: false })
    expect(applied).toEqual(RULE_NAMES)
  })

  it('keeps the fields no rule is about', () => {
    const input = request([user('Hi')], { stream: true, max_tokens: 64, seed: 7, stop: ['\n\n'] })
    expect(withRules(input, ['temperature']).request).toMatchObject({
      model: 'deepseek-r1',
      stream: true,
      max_tokens: 64,
      seed: 7,
      stop: ['\n\n'],
    })
  })

  it.each([
    ['whitespace only', request([user(' \n\t'), assistant('Hello')]), ['fold_system']],
    ['no user message', request([assistant('Hello')]), []],
    ['system text with folding off', request([system('Be brief.')]), ['merge_consecutive']],
    ['empty text parts', request([user([{ type: 'text', text: '' }]), user(' ')]), ['merge_consecutive']],
  ] as const)('refuses a prompt with %s as a 400 empty_prompt', (_case, input, rules) => {
    expect(() => withRules(input, [...rules])).toThrow(expect.objectContaining({ status: 400, code: 'empty_prompt', param: 'messages' }))
  })

  it('accepts system text alone once folding makes it a user message', () => {
    expect(withRules(request([system('Say hi.')]), ['fold_system']).request.messages).toEqual([user('Say hi.')])
  })

  it('gives the directive to a folded system prompt that reads as math', () => {
    const input = request([system('Solve for x.'), user('x + 3 = 5')])
    const { request: out } = withRules(input, ['fold_system', 'math_directive'])
    expect(out.messages).toEqual([user(`Solve for x.\n\nx + 3 = 5\n${MATH_DIRECTIVE}`)])
  })
})
