import { ApiError, type ErrorCode } from '../errors.ts'
import { base64url } from './key-record.ts'
import { fromBase64url, hmacKey } from './stream-token.ts'

// A stream session's event URL carries its own signature, because EventSource cannot send an
// Authorization header: `/v1/streams/<id>/events?exp=<unix s>&sig=<base64url HMAC-SHA256>`.
// It is signed with the stream token secrets (the first signs, all verify), over a message that
// starts with its own purpose string, so a stream token's signature (over "st1.<claims>") can
// never pass as a URL signature, nor the reverse.

const PURPOSE = 'stream-url.v1'

export interface SignedStreamUrl {
  url: string
  expires: number
}

function message(sessionId: string, expires: number): Uint8Array {
  return new TextEncoder().encode(`${PURPOSE}\n${sessionId}\n${expires}`)
}

export async function signStreamUrl(origin: string, sessionId: string, expires: number, secret: string): Promise<SignedStreamUrl> {
  const signature = await crypto.subtle.sign('HMAC', await hmacKey(secret), message(sessionId, expires))
  const url = `${origin}/v1/streams/${encodeURIComponent(sessionId)}/events?exp=${expires}&sig=${base64url(new Uint8Array(signature))}`
  return { url, expires }
}

/**
 * Checks the signature against every active secret (crypto.subtle.verify compares in constant
 * time), then the expiry. A URL whose `exp` was changed fails the signature, so it is "not valid"
 * rather than "expired". Every failure is a 401 that names no secret.
 */
export async function verifyStreamUrl(
  sessionId: string,
  exp: string | undefined,
  sig: string | undefined,
  secrets: readonly string[],
  nowS: number,
): Promise<void> {
  const expires = Number(exp)
  const signature = fromBase64url(sig ?? '')
  if (!/^\d{1,15}$/.test(exp ?? '') || !signature || signature.length === 0) {
    throw invalid('The stream URL is missing its exp or sig parameter.')
  }
  let valid = false
  for (const secret of secrets) {
    if (await crypto.subtle.verify('HMAC', await hmacKey(secret), signature, message(sessionId, expires))) valid = true
  }
  if (!valid) throw invalid('The stream URL is not valid.')
  if (expires <= nowS) throw invalid('The stream URL has expired.', 'expired_stream_url')
}

function invalid(message: string, code: ErrorCode = 'invalid_stream_url'): ApiError {
  return new ApiError(401, message, { code })
}
