import { signValue, verifySignedValue } from '../auth/signed-value.ts'

// The dashboard's sign-in: an admin signs in once (their API key in a form, or a signed link the
// CLI asked the API for) and gets a session cookie; EventSource-free, header-free page loads.

export const SESSION_COOKIE = '__Host-dashboard'
export const SESSION_TTL_S = 8 * 60 * 60
export const LINK_TTL_S = 10 * 60
/** How long opening a link waits for its one-use check before refusing with 503. */
export const LINK_CHECK_TIMEOUT_MS = 5_000

export type SignedPurpose = 'dashboard-session' | 'dashboard-link'

export interface DashboardClaims {
  keyId: string
  /** Unix seconds. */
  expires: number
  /** A link's own id (the name of its DashboardLink object, which lets it sign in once); null for a session. */
  linkId: string | null
}

/** A link gets a random id of its own (`linkId`): the one-use mark is kept under it. */
export function mintDashboardValue(
  purpose: SignedPurpose,
  keyId: string,
  ttlS: number,
  secret: string,
  nowS: number,
  linkId?: string,
): Promise<string> {
  return signValue(purpose, { k: keyId, e: nowS + ttlS, ...(linkId === undefined ? {} : { j: linkId }) }, secret)
}

/** The claims of a valid, unexpired session cookie or link; null otherwise. */
export async function readDashboardValue(
  purpose: SignedPurpose,
  token: string,
  secrets: readonly string[],
  nowS: number,
): Promise<DashboardClaims | null> {
  const value = await verifySignedValue(purpose, token, secrets)
  if (typeof value !== 'object' || value === null) return null
  const { k, e, j } = value as { k?: unknown; e?: unknown; j?: unknown }
  if (typeof k !== 'string' || typeof e !== 'number' || e <= nowS) return null
  return { keyId: k, expires: e, linkId: typeof j === 'string' && j !== '' ? j : null }
}
