import { base64url } from './key-record.ts'
import { fromBase64url as decode, hmacKey } from './stream-token.ts'

// Small signed values (dashboard sessions and links): `<base64url(JSON)>.<base64url(HMAC-SHA256)>`,
// where the HMAC covers a purpose string too, so a value signed for one purpose is never accepted
// for another, even under the same secret. Every secret in the list verifies; the first signs.

const encoder = new TextEncoder()

export async function signValue(purpose: string, value: object, secret: string): Promise<string> {
  const body = base64url(encoder.encode(JSON.stringify(value)))
  const signature = await crypto.subtle.sign('HMAC', await hmacKey(secret), encoder.encode(`${purpose}.${body}`))
  return `${body}.${base64url(new Uint8Array(signature))}`
}

/** The signed JSON value, or null when it is malformed or no secret's signature matches. */
export async function verifySignedValue(purpose: string, token: string, secrets: readonly string[]): Promise<unknown> {
  const [body, signatureText, extra] = token.split('.')
  const signature = decode(signatureText ?? '')
  const bytes = decode(body ?? '')
  if (extra !== undefined || !body || !signature || !bytes) return null
  let valid = false
  for (const secret of secrets) {
    // crypto.subtle.verify compares in constant time.
    if (await crypto.subtle.verify('HMAC', await hmacKey(secret), signature, encoder.encode(`${purpose}.${body}`))) valid = true
  }
  if (!valid) return null
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as unknown
  } catch {
    return null
  }
}
