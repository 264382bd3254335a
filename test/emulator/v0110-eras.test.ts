// The reasoning field by vLLM era (protocol.py DeltaMessage / ChatMessage): v0.11.0's
// reasoning_content, #27752's `reasoning` with a mirror, #33402's `reasoning` only, builds that
// add "reasoning_content": null everywhere, and no reasoning parser at all.

import { describe, expect, it } from 'vitest'
import type { EmulatorOptions } from '../../gpu-backend/emulator/server.ts'
import { chatBody, emulatorV0110, post } from './helpers.ts'

const STREAM = chatBody('reasoning_tokens=5 content_tokens=4 merge_tokens=3', { stream: true })

/** Every raw delta object of a stream, in order. */
async function deltas(options: Partial<EmulatorOptions>): Promise<string[]> {
  const emulator = await emulatorV0110(options)
  const text = await (await post(emulator, '/v1/chat/completions', STREAM)).text()
  return [...text.matchAll(/"delta":(\{[^}]*\})/g)].map((match) => match[1] ?? '')
}

async function message(options: Partial<EmulatorOptions>): Promise<Record<string, unknown>> {
  const emulator = await emulatorV0110(options)
  const body = (await (await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=3 content_tokens=3'))).json()) as {
    choices: { message: Record<string, unknown> }[]
  }
  return body.choices[0]?.message ?? {}
}

describe('reasoning fields by vLLM era', () => {
  it('v0.11.0 (reasoning_content): only the fields the parser set, reasoning_content after content', async () => {
    const all = await deltas({ reasoningField: 'reasoning_content' })
    expect(all[0]).toBe('{"role":"assistant","content":""}')
    expect(all[1]).toMatch(/^\{"reasoning_content":"[^"]+"\}$/)
    expect(all[3]).toMatch(/^\{"content":"\\n\\n[^"]+","reasoning_content":" [^"]+"\}$/)
    expect(all.at(-1)).toMatch(/^\{"content":"[^"]*"\}$/)
  })

  it('late 2025 (both): reasoning plus a reasoning_content mirror in every delta, null outside reasoning', async () => {
    const all = await deltas({ reasoningField: 'both' })
    expect(all[0]).toBe('{"role":"assistant","content":"","reasoning_content":null}')
    expect(all[1]).toMatch(/^\{"reasoning":"([^"]+)","reasoning_content":"\1"\}$/)
    expect(all[3]).toMatch(/^\{"content":"\\n\\n[^"]+","reasoning":"( [^"]+)","reasoning_content":"\1"\}$/)
    expect(all.at(-1)).toMatch(/^\{"content":"[^"]*","reasoning_content":null\}$/)
    expect(await message({ reasoningField: 'both' })).toMatchObject({
      reasoning: expect.any(String),
      reasoning_content: expect.any(String),
    })
  })

  it('2026 (reasoning): reasoning only, no reasoning_content anywhere', async () => {
    const all = await deltas({ reasoningField: 'reasoning' })
    expect(all.join('')).not.toContain('reasoning_content')
    expect(all[3]).toMatch(/^\{"content":"\\n\\n[^"]+","reasoning":" [^"]+"\}$/)
    expect(await message({ reasoningField: 'reasoning' })).not.toHaveProperty('reasoning_content')
  })

  it('2026 builds with reasoning_null: "reasoning_content": null in every delta, content deltas included', async () => {
    const all = await deltas({ reasoningField: 'reasoning_null' })
    expect(all.every((delta) => delta.endsWith(',"reasoning_content":null}'))).toBe(true)
    expect(all[1]).toMatch(/^\{"reasoning":"[^"]+","reasoning_content":null\}$/)
    expect(all.at(-1)).toMatch(/^\{"content":"[^"]*","reasoning_content":null\}$/)
    const body = await message({ reasoningField: 'reasoning_null' })
    expect(body.reasoning).toEqual(expect.any(String))
    expect(body.reasoning_content).toBeNull()
  })

  it('no reasoning parser: reasoning and </think> arrive inside content, never <think>', async () => {
    const all = await deltas({ reasoningParser: null })
    const content = all.map((delta) => (JSON.parse(delta) as { content?: string }).content ?? '').join('')
    expect(all.join('')).not.toContain('reasoning')
    expect(content).toContain('</think>\n\n')
    expect(content).not.toContain('<think>')
    expect((await message({ reasoningParser: null })).content).toMatch(/^[^<]+<\/think>\n\n/)
  })
})
