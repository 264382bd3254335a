import { ApiError, type ErrorCode } from '../errors.ts'
import { base64url } from './key-record.ts'

// Browser stream tokens: native EventSource cannot send an Authorization header, so a page gets
// a short-lived token, minted with an API key, and puts it in the query string. Format:
// `st1.<base64url(JSON claims)>.<base64url(HMAC-SHA256 of "st1.<claims>")>`.

export interface StreamTokenClaims {
  /** The key that minted it: limits, scopes and revocation follow that key. */
  keyId: string
  /** Unix seconds. */
  expires: number
  /** The only browser origin that may use it, or null for any the key allows. */
  origin: string | null
}

const PREFIX = 'st1.'
export const MAX_STREAM_TOKEN_TTL_S = 15 * 60
export const DEFAULT_STREAM_TOKEN_TTL_S = 5 * 60

const encoder = new TextEncoder()
const hmacKeys = new Map<string, Promise<CryptoKey>>()

export function looksLikeStreamToken(value: string): boolean {
  return value.startsWith(PREFIX)
}

export async function mintStreamToken(secret: string, claims: StreamTokenClaims): Promise<string> {
  const body = `${PREFIX}${base64url(encoder.encode(JSON.stringify({ k: claims.keyId, e: claims.expires, o: claims.origin })))}`
  const signature = await crypto.subtle.sign('HMAC', await hmacKey(secret), encoder.encode(body))
  return `${body}.${base64url(new Uint8Array(signature))}`
}

/**
 * Checks the signature against every active secret (two during a rotation), then the expiry.
 * crypto.subtle.verify compares in constant time. Every failure is a 401 that names no secret.
 */
export async function verifyStreamToken(token: string, secrets: readonly string[], nowS: number): Promise<StreamTokenClaims> {
  const parts = token.split('.')
  if (parts.length !== 3 || `${parts[0]}.` !== PREFIX) throw invalid('The stream token is malformed.')
  const body = `${parts[0]}.${parts[1]}`
  const signature = fromBase64url(parts[2] ?? '')
  let valid = false
  for (const secret of secrets) {
    if (signature && (await crypto.subtle.verify('HMAC', await hmacKey(secret), signature, encoder.encode(body)))) valid = true
  }
  if (!valid) throw invalid('The stream token is not valid.')
  const claims = decodeClaims(parts[1] ?? '')
  if (claims.expires <= nowS) throw invalid('The stream token has expired.', 'expired_stream_token')
  return claims
}

function decodeClaims(encoded: string): StreamTokenClaims {
  const bytes = fromBase64url(encoded)
  try {
    const raw = JSON.parse(new TextDecoder().decode(bytes ?? new Uint8Array())) as { k?: unknown; e?: unknown; o?: unknown }
    if (typeof raw.k === 'string' && typeof raw.e === 'number' && (raw.o === null || typeof raw.o === 'string')) {
      return { keyId: raw.k, expires: raw.e, origin: raw.o }
    }
  } catch {
    // falls through to the error below
  }
  throw invalid('The stream token is malformed.')
}

/** The HMAC-SHA256 key of one secret, imported once per isolate (stream URLs sign with it too). */
export function hmacKey(secret: string): Promise<CryptoKey> {
  let key = hmacKeys.get(secret)
  if (!key) {
    key = crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
    hmacKeys.set(secret, key)
  }
  return key
}

export function fromBase64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null
  try {
    const binary = atob(text.replaceAll('-', '+').replaceAll('_', '/') + '='.repeat((4 - (text.length % 4)) % 4))
    return Uint8Array.from(binary, (char) => char.charCodeAt(0))
  } catch {
    return null
  }
}

function invalid(message: string, code: ErrorCode = 'invalid_stream_token'): ApiError {
  return new ApiError(401, message, { code })
}
