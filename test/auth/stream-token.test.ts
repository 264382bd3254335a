import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.ts'
import { mintStreamToken, verifyStreamToken } from '../../src/auth/stream-token.ts'

const now = 1_800_000_000
const claims = { keyId: 'key_abc', expires: now + 300, origin: 'https://app.example' }

describe('stream tokens', () => {
  it('verify to the claims they were minted with', async () => {
    const token = await mintStreamToken('secret-a', claims)
    expect(token).toMatch(/^st1\.[\w-]+\.[\w-]+$/)
    await expect(verifyStreamToken(token, ['secret-a'], now)).resolves.toEqual(claims)
  })

  it('verify with either of two active secrets during a rotation', async () => {
    const old = await mintStreamToken('secret-old', claims)
    const fresh = await mintStreamToken('secret-new', claims)
    for (const token of [old, fresh]) await expect(verifyStreamToken(token, ['secret-new', 'secret-old'], now)).resolves.toEqual(claims)
  })

  it('are refused once their secret is retired', async () => {
    const token = await mintStreamToken('secret-old', claims)
    await expect(verifyStreamToken(token, ['secret-new'], now)).rejects.toMatchObject({ status: 401, code: 'invalid_stream_token' })
  })

  it('are refused after they expire', async () => {
    const token = await mintStreamToken('secret-a', claims)
    await expect(verifyStreamToken(token, ['secret-a'], claims.expires)).rejects.toMatchObject({
      status: 401,
      code: 'expired_stream_token',
    })
  })

  it('are refused when their claims are changed (a longer expiry, another key)', async () => {
    const token = await mintStreamToken('secret-a', claims)
    const [prefix, , signature] = token.split('.')
    for (const forged of [
      { ...claims, expires: now + 99_999 },
      { ...claims, keyId: 'key_other' },
    ]) {
      const body = btoa(JSON.stringify({ k: forged.keyId, e: forged.expires, o: forged.origin })).replaceAll('=', '')
      await expect(verifyStreamToken(`${prefix}.${body}.${signature}`, ['secret-a'], now)).rejects.toMatchObject({ status: 401 })
    }
  })

  it('turn any garbage into a 401, never another error (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `st1.${s}`),
          fc.tuple(fc.string(), fc.string()).map(([a, b]) => `st1.${a}.${b}`),
        ),
        async (garbage) => {
          const error = await verifyStreamToken(garbage, ['secret-a'], now).then(
            () => null,
            (e: unknown) => e,
          )
          expect(error).toBeInstanceOf(ApiError)
          expect(error).toMatchObject({ status: 401 })
        },
      ),
      { numRuns: 300 },
    )
  })
})
