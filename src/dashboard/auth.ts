import type { Context } from 'hono'
import { getCookie } from 'hono/cookie'
import { createMiddleware } from 'hono/factory'
import { findKeyById, findKeyBySecret, keyProblem } from '../auth/key-store.ts'
import type { KeyRecord } from '../auth/key-record.ts'
import { isRevoked } from '../auth/revocation.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { SESSION_COOKIE, readDashboardValue } from './session.ts'

/** The signing secrets, or a 503 saying the deployment has none (sessions need one). */
export function signingSecrets(c: Context<AppEnv>): readonly string[] {
  const secrets = c.get('config').streamTokenSecrets
  if (secrets.length === 0) {
    throw new ApiError(503, 'The dashboard needs STREAM_TOKEN_SECRETS (its sessions are signed with it).', {
      code: 'dashboard_unavailable',
    })
  }
  return secrets
}

/** A key that may see the dashboard: it exists, is neither revoked nor expired, and has the admin scope. */
export function isAdmin(record: KeyRecord | null): record is KeyRecord {
  return record !== null && keyProblem(record) === null && record.scopes.includes('admin')
}

export async function adminBySecret(c: Context<AppEnv>, secret: string): Promise<KeyRecord | null> {
  const record = await findKeyBySecret(c.env.KEYS, secret, c.get('config').keyCacheTtlMs)
  return isAdmin(record) && !(await isRevoked(c, record.id)) ? record : null
}

/**
 * The dashboard's pages and data: a valid session cookie of a key that is still an admin (a key
 * revoked through its limiter ends its sessions within REVOCATION_CHECK_TTL_MS, one revoked in KV
 * only within KEY_CACHE_TTL_MS). Pages send the browser to the login form;
 * the data answers 401 (the page's script then goes to the form).
 */
export function dashboardSession(kind: 'page' | 'data') {
  return createMiddleware<AppEnv>(async function dashboardSession(c, next) {
    const cookie = getCookie(c, SESSION_COOKIE)
    const claims = cookie ? await readDashboardValue('dashboard-session', cookie, signingSecrets(c), Math.floor(Date.now() / 1000)) : null
    const record = claims ? await findKeyById(c.env.KEYS, claims.keyId, c.get('config').keyCacheTtlMs) : null
    if (!isAdmin(record) || (await isRevoked(c, record.id))) {
      if (kind === 'page') return c.redirect('/dashboard/login', 303)
      throw new ApiError(401, 'Sign in to the dashboard first.', { code: 'dashboard_session_required' })
    }
    c.set('principal', { keyId: record.id, record, via: 'api_key' })
    await next()
  })
}
