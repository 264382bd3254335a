import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.ts'
import {
  normalizeChatRequest,
  RULE_NAMES,
  type NormalizeOptions,
  type Normalized,
  type UpstreamChatRequest,
} from '../../src/normalize/index.ts'
import { chatRequest, countDirectives, normalizeOptions, textOf } from './arbitraries.ts'

const RUNS = { numRuns: 500 }
// Idempotence depends on rare meetings (a think block cut out right before a combining mark),
// and a run costs well under a millisecond, so it gets more tries.
const IDEMPOTENCE_RUNS = { numRuns: 3000 }

/** The normalized request, or null for the one refusal a generated request may earn. */
function normalizeOrRefuse(request: UpstreamChatRequest, options: NormalizeOptions): Normalized | null {
  try {
    return normalizeChatRequest(request, options)
  } catch (error) {
    if (error instanceof ApiError && error.code === 'empty_prompt') return null
    throw error
  }
}

describe('normalizeChatRequest, for any request and any rule switches', () => {
  it('changes nothing and reports nothing on a second pass', () => {
    fc.assert(
      fc.property(chatRequest, normalizeOptions, (request, options) => {
        const once = normalizeOrRefuse(request, options)
        if (!once) return
        const twice = normalizeChatRequest(once.request, options)
        expect(twice.request).toStrictEqual(once.request)
        expect(twice.applied).toEqual([])
      }),
      IDEMPOTENCE_RUNS,
    )
  })

  it('keeps every user text, NFC-composed when nfc is on, inside some output message', () => {
    fc.assert(
      fc.property(chatRequest, normalizeOptions, (request, options) => {
        const out = normalizeOrRefuse(request, options)
        if (!out) return
        const outputTexts = out.request.messages.map(textOf)
        for (const message of request.messages.filter((message) => message.role === 'user')) {
          const text = options.rules.nfc ? textOf(message).normalize('NFC') : textOf(message)
          expect(outputTexts.some((output) => output.includes(text))).toBe(true)
        }
      }),
      RUNS,
    )
  })

  it('always ends with a temperature within 0.5-0.7 when that rule is on', () => {
    fc.assert(
      fc.property(chatRequest, normalizeOptions, (request, options) => {
        const out = normalizeOrRefuse(request, { ...options, rules: { ...options.rules, temperature: true } })
        if (!out) return
        expect(out.request.temperature).toBeGreaterThanOrEqual(0.5)
        expect(out.request.temperature).toBeLessThanOrEqual(0.7)
      }),
      RUNS,
    )
  })

  it('never puts the math directive into one message twice', () => {
    // Merging could join two client texts that each quote it; the rules must not add a second.
    const quotingItOnceAtMost = chatRequest.filter(
      (request) => request.messages.reduce((sum, message) => sum + countDirectives(message), 0) <= 1,
    )
    fc.assert(
      fc.property(quotingItOnceAtMost, normalizeOptions, (request, options) => {
        const out = normalizeOrRefuse(request, options)
        if (!out) return
        for (const message of out.request.messages) expect(countDirectives(message)).toBeLessThanOrEqual(1)
      }),
      RUNS,
    )
  })

  it('leaves no system message when fold_system is on', () => {
    fc.assert(
      fc.property(chatRequest, normalizeOptions, (request, options) => {
        const out = normalizeOrRefuse(request, { ...options, rules: { ...options.rules, fold_system: true } })
        if (!out) return
        expect(out.request.messages.map((message) => message.role)).not.toContain('system')
      }),
      RUNS,
    )
  })

  it('never mutates its input, even when it refuses it', () => {
    fc.assert(
      fc.property(chatRequest, normalizeOptions, (request, options) => {
        const before = structuredClone(request)
        normalizeOrRefuse(request, options)
        expect(request).toStrictEqual(before)
      }),
      RUNS,
    )
  })

  it('reports only switched-on rules, in RULE_NAMES order', () => {
    fc.assert(
      fc.property(chatRequest, normalizeOptions, (request, options) => {
        const out = normalizeOrRefuse(request, options)
        if (!out) return
        expect(out.applied).toEqual(RULE_NAMES.filter((name) => out.applied.includes(name) && options.rules[name]))
      }),
      RUNS,
    )
  })
})
