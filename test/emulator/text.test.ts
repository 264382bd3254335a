import { describe, expect, it } from 'vitest'
import { pythonJsonDumps } from '../../gpu-backend/emulator/errors.ts'
import { parseDirectives, parseFault } from '../../gpu-backend/emulator/faults.ts'
import { chatTokenPlan } from '../../gpu-backend/emulator/text.ts'
import { chatBody, emulatorV0110, post } from './helpers.ts'
import { payloads } from '../support/sse.ts'

type Delta = { content?: string; reasoning_content?: string }

async function streamedDeltas(seed: number, body: Record<string, unknown>): Promise<Delta[]> {
  const emulator = await emulatorV0110({ seed })
  const text = await (await post(emulator, '/v1/chat/completions', { ...body, stream: true })).text()
  return payloads(text).map((chunk) => (chunk.choices as { delta: Delta }[])[0]?.delta ?? {})
}

const MULTIBYTE = /[^\x00-\x7f]/

describe('generated text', () => {
  it('is the same for the same request and seed, and differs with the seed or the prompt', async () => {
    const body = chatBody()
    const first = await streamedDeltas(7, body)
    expect(await streamedDeltas(7, body)).toEqual(first)
    expect(await streamedDeltas(8, body)).not.toEqual(first)
    expect(await streamedDeltas(7, chatBody('', { messages: [{ role: 'user', content: 'Name a colour.' }] }))).not.toEqual(first)
  })

  // gpu-backend/emulator/README.md: the words depend on the server's --seed and the prompt only.
  it("ignores the request's own seed and temperature: no sampling, only the word lists", async () => {
    const first = await streamedDeltas(7, chatBody())
    expect(await streamedDeltas(7, chatBody('', { seed: 12345, temperature: 1.5, top_p: 0.5 }))).toEqual(first)
  })

  it('is English-like words with leading spaces, the first reasoning token without one', async () => {
    const deltas = await streamedDeltas(1, chatBody('reasoning_tokens=6 content_tokens=6'))
    const reasoning = deltas.flatMap((delta) => (delta.reasoning_content === undefined ? [] : [delta.reasoning_content]))
    const content = deltas.flatMap((delta) => (delta.content === undefined || delta.content === '' ? [] : [delta.content]))
    expect(reasoning).toHaveLength(6)
    expect(reasoning[0]).toMatch(/^[A-Z][a-z]+$/)
    expect(reasoning.slice(1).every((token) => /^ \S+$/u.test(token))).toBe(true)
    expect(content[0]).toMatch(/^\n\n\S+$/u)
    expect(content.slice(1).every((token) => /^ \S+$/u.test(token))).toBe(true)
  })

  it('has a multibyte UTF-8 character within the first two tokens of both reasoning and content', () => {
    for (let seed = 0; seed < 50; seed++) {
      const plan = chatTokenPlan({ seed, requestKey: 'any', reasoningTokens: 3, contentTokens: 3 })
      const reasoning = plan
        .filter((token) => token.kind === 'reasoning')
        .slice(0, 2)
        .map((token) => token.text)
      const content = plan
        .filter((token) => token.kind === 'content')
        .slice(0, 2)
        .map((token) => token.text)
      expect(reasoning.join('')).toMatch(MULTIBYTE)
      expect(content.join('')).toMatch(MULTIBYTE)
    }
    const single = chatTokenPlan({ seed: 1, requestKey: 'x', reasoningTokens: 1, contentTokens: 1 })
    expect(single.every((token) => token.kind === 'think_end' || token.kind === 'eos' || MULTIBYTE.test(token.text))).toBe(true)
  })
})

describe('directives and Python-compatible JSON', () => {
  it('reads every directive key, later directives winning', () => {
    const result = parseDirectives([
      '[emulator ttft_ms=5 fault=die_after:3]',
      'x [emulator itl_ms=2 reasoning_tokens=0 content_tokens=9 ttft_ms=7] y',
    ])
    expect(result).toEqual({
      ok: true,
      overrides: { ttftMs: 7, itlMs: 2, reasoningTokens: 0, contentTokens: 9, fault: { kind: 'die_after', after: 3 } },
    })
  })

  it('rejects malformed faults', () => {
    expect(parseFault('refuse:200')).toBeNull()
    expect(parseFault('die_after')).toBeNull()
    expect(parseFault('explode:1')).toBeNull()
    expect(parseFault('malformed_after:0')).toEqual({ kind: 'malformed_after', after: 0 })
  })

  it('serializes like json.dumps: spaced separators and ASCII-only escapes', () => {
    expect(pythonJsonDumps({ a: 'é🙂\n"', b: [1, null, true] })).toBe('{"a": "\\u00e9\\ud83d\\ude42\\n\\"", "b": [1, null, true]}')
  })
})
