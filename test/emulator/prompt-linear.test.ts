// A chat prompt's work is linear in its messages: prefix keys form a hash chain, and they are hashed
// only for a request that passed its checks (gpu-backend/emulator/validate.ts). Measured as bytes
// fed to the hash, not as time.
import type * as crypto from 'node:crypto'
import { describe, expect, it, vi } from 'vitest'

const hashed = vi.hoisted(() => ({ bytes: 0, calls: 0 }))

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof crypto>()
  return {
    ...actual,
    createHash: (algorithm: string) => {
      const hash = actual.createHash(algorithm)
      const update = hash.update.bind(hash)
      hashed.calls += 1
      hash.update = ((data: string) => {
        hashed.bytes += Buffer.byteLength(data)
        return update(data)
      }) as typeof hash.update
      return hash
    },
  }
})

const { defaultOptions } = await import('../../gpu-backend/emulator/options.ts')
const { validateGeneration } = await import('../../gpu-backend/emulator/validate.ts')

type Message = { role: string; content: string }

function conversation(count: number): Message[] {
  return Array.from({ length: count }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `turn ${i} of the talk` }))
}

function accepted(messages: Message[], extra: Record<string, unknown> = {}) {
  const result = validateGeneration({ ...defaultOptions(), maxModelLen: 10_000_000 }, 'chat', { messages, ...extra })
  if (!result.ok) throw new Error(result.error.message)
  return result.request
}

/** Bytes hashed while `run` runs. */
function bytesHashed(run: () => void): number {
  const before = hashed.bytes
  run()
  return hashed.bytes - before
}

describe('prompt prefix keys', () => {
  it('hashes twice the bytes, not four times, for twice the messages', () => {
    const small = accepted(conversation(1000))
    const large = accepted(conversation(2000))
    let keys = 0
    const smallBytes = bytesHashed(() => (keys = small.prefixes().length))
    expect(keys).toBe(1001) // one per message, and the whole prompt
    const largeBytes = bytesHashed(() => (keys = large.prefixes().length))
    expect(keys).toBe(2001)
    // A key per prefix over all the messages before it would make this about 4.
    expect(largeBytes / smallBytes).toBeGreaterThan(1.9)
    expect(largeBytes / smallBytes).toBeLessThan(2.2)
  })

  it('refuses a 30,000-message prompt on its context length without hashing a single prefix', () => {
    const before = hashed.calls
    const result = validateGeneration(defaultOptions(), 'chat', { messages: conversation(30_000), max_tokens: 16 })
    expect(result.ok).toBe(false)
    if (result.ok) return
    // v0.20.2 (the default): so many characters are refused before tokenizing (renderers/params.py _text_len_check).
    expect(result.error).toMatchObject({ param: 'input_text' })
    expect(result.error.message).toMatch(
      /^This model's maximum context length is 4096 tokens\. However, you requested 16 output tokens and your prompt contains \d+ characters/,
    )
    expect(hashed.calls - before).toBe(0)
  })

  it('keeps the keys a prefix cache needs: shared prefixes equal, then apart; salted apart; the whole prompt its own', () => {
    const base = conversation(4)
    const one = accepted(base).prefixes()
    const other = accepted([...base.slice(0, 2), { role: 'user', content: 'something else' }, base[3] as Message]).prefixes()
    expect(other.slice(0, 2)).toEqual(one.slice(0, 2))
    expect(other.slice(2).map((p) => p.key)).not.toContain(one[2]?.key)
    expect(other[3]?.key).not.toBe(one[3]?.key) // a chain: a different earlier message changes every later key
    const salted = accepted(base, { cache_salt: 'tenant-a' }).prefixes()
    expect(salted.map((p) => p.key).filter((key) => one.some((p) => p.key === key))).toEqual([])
    const shorter = accepted(base.slice(0, 3)).prefixes()
    expect(shorter.slice(0, 3)).toEqual(one.slice(0, 3))
    expect(shorter[3]?.key).not.toBe(one[3]?.key) // the 3-message prompt's whole-prompt key is not the 4-message prompt's prefix
    expect(one.map((p) => p.tokens)).toEqual([...one.map((p) => p.tokens)].sort((a, b) => a - b))
    expect(one.at(-1)?.tokens).toBe(accepted(base).promptTokens)
  })
})
