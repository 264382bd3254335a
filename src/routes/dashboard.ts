import type { Context } from 'hono'
import { deleteCookie, setCookie } from 'hono/cookie'
import { adminBySecret, signingSecrets } from '../dashboard/auth.ts'
import { dashboardSeries } from '../dashboard/series.ts'
import {
  LINK_CHECK_TIMEOUT_MS,
  LINK_TTL_S,
  SESSION_COOKIE,
  SESSION_TTL_S,
  mintDashboardValue,
  readDashboardValue,
} from '../dashboard/session.ts'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import DASHBOARD_CSS from '../pages/dashboard/dashboard.css'
import DASHBOARD_HTML from '../pages/dashboard/dashboard.html'
import DASHBOARD_SCRIPT from '../pages/dashboard/dashboard.browser.js'
import LOGIN_HTML from '../pages/dashboard/login.html'
import { fillTemplate } from '../pages/template.ts'
import { readWindow } from '../telemetry/buckets.ts'
import { historyDays, readBoard, usageHistoryOf } from '../telemetry/key-usage.ts'
import { latencyQuery, latencyReport } from '../telemetry/latency-report.ts'

// GET /dashboard and its sign-in. The pages are files in src/pages/dashboard/, imported as text.
// They are served with a strict Content-Security-Policy: the script comes from /dashboard/app.js,
// the style from /dashboard/style.css, data from /dashboard/data and /dashboard/keys (the Keys
// section: the board and a key's history), nothing else.
// Referrer-Policy same-origin, not no-referrer: under no-referrer a browser sends `Origin: null`
// with the page's own form POST, which the same-origin check of sign-in then cannot tell from a
// sandboxed cross-site frame. No other site ever gets a Referer from these pages either way.

const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'cache-control': 'no-store',
  'referrer-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
}

/** The sign-in form, with `message` (escaped) in its alert; the alert hides itself when empty. */
function loginPage(message: string | null): string {
  return fillTemplate(LOGIN_HTML, { message: message ?? '' })
}

const nowS = () => Math.floor(Date.now() / 1000)

async function startSession(c: Context<AppEnv>, keyId: string): Promise<Response> {
  const session = await mintDashboardValue('dashboard-session', keyId, SESSION_TTL_S, signingSecrets(c)[0] as string, nowS())
  // __Host-: Secure, Path=/, no Domain, so no other host or path can plant or read it.
  setCookie(c, SESSION_COOKIE, session, { path: '/', secure: true, httpOnly: true, sameSite: 'Strict', maxAge: SESSION_TTL_S })
  return c.redirect('/dashboard', 303)
}

export function showDashboard(c: Context<AppEnv>): Response | Promise<Response> {
  return c.html(DASHBOARD_HTML, 200, PAGE_HEADERS)
}

export function showLogin(c: Context<AppEnv>): Response | Promise<Response> {
  return c.html(loginPage(null), 200, PAGE_HEADERS)
}

/** POST /dashboard/login (form field `key`): an admin key starts a session; anything else is refused without saying why. */
export async function login(c: Context<AppEnv>): Promise<Response> {
  signingSecrets(c)
  const form = await c.req.parseBody().catch(() => ({}) as Record<string, unknown>)
  const key = typeof form.key === 'string' ? form.key.trim() : ''
  const record = key ? await adminBySecret(c, key) : null
  if (!record) return c.html(loginPage('That key cannot open the dashboard.'), 401, PAGE_HEADERS)
  return startSession(c, record.id)
}

/** GET /dashboard/link?token=...: a signed link from the CLI starts a session once it is opened. */
export async function openLink(c: Context<AppEnv>): Promise<Response> {
  const claims = await readDashboardValue('dashboard-link', c.req.query('token') ?? '', signingSecrets(c), nowS())
  if (!claims) return c.html(loginPage('That dashboard link is invalid or has expired.'), 401, PAGE_HEADERS)
  // A link without an id was made before links became single-use: refused like a used one.
  if (claims.linkId === null || !(await firstUseOf(c, claims.linkId, claims.expires))) {
    return c.html(loginPage('That dashboard link has already been used. Ask for a new one.'), 401, PAGE_HEADERS)
  }
  return startSession(c, claims.keyId)
}

/** Marks the link used in its own Durable Object; true only the first time, wherever it is opened. */
async function firstUseOf(c: Context<AppEnv>, linkId: string, expiresS: number): Promise<boolean> {
  const links = c.env.DASHBOARD_LINKS
  let timer: ReturnType<typeof setTimeout> | null = null
  // An object that never answers must not hold the browser: no answer in time is a refusal too.
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no answer')), LINK_CHECK_TIMEOUT_MS)
  })
  try {
    return await Promise.race([links.get(links.idFromName(linkId)).consume(expiresS * 1000), late])
  } catch {
    // Unknown whether it was used: refuse (fail closed), the admin can sign in with the key instead.
    throw new ApiError(503, 'Sign-in links cannot be checked right now; try again or sign in with the key.', {
      code: 'dashboard_unavailable',
    })
  } finally {
    if (timer !== null) clearTimeout(timer)
  }
}

export function logout(c: Context<AppEnv>): Response {
  deleteCookie(c, SESSION_COOKIE, { path: '/', secure: true })
  return c.redirect('/dashboard/login', 303)
}

/** GET /dashboard/app.js, behind the session like the page: only a signed-in admin gets the code. */
export function dashboardScript(c: Context<AppEnv>): Response {
  return c.body(DASHBOARD_SCRIPT, 200, {
    'content-type': 'text/javascript; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  })
}

/** GET /dashboard/style.css: public, since the sign-in form uses it too (it holds nothing but style). */
export function dashboardStyle(c: Context<AppEnv>): Response {
  return c.body(DASHBOARD_CSS, 200, {
    'content-type': 'text/css; charset=utf-8',
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
  })
}

/** GET /dashboard/data?window=...: the charts' series and the summary table. */
export async function dashboardData(c: Context<AppEnv>): Promise<Response> {
  const { window } = latencyQuery(c)
  const now = Date.now()
  const buckets = await readWindow(c.env.LATENCY, window, now)
  c.header('cache-control', 'no-store')
  return c.json({ ...dashboardSeries(buckets, window, now), report: latencyReport(buckets, window, now, null) })
}

/** GET /dashboard/keys: the board of keys (the Keys section), as GET /v1/keys/board answers it. */
export async function dashboardKeys(c: Context<AppEnv>): Promise<Response> {
  c.header('cache-control', 'no-store')
  return c.json(await readBoard(c))
}

/** GET /dashboard/keys/:id/usage?days=N: one key's tokens per UTC day (the Keys section's chart), from its limiter. */
export async function dashboardKeyUsage(c: Context<AppEnv>): Promise<Response> {
  const days = historyDays(c.req.query('days'))
  const history = await usageHistoryOf(c, c.req.param('id') ?? '', days)
  c.header('cache-control', 'no-store')
  return c.json(history)
}

/** POST /v1/dashboard/links (admin API key): a sign-in link valid for LINK_TTL_S and one use, for the CLI. */
export async function createDashboardLink(c: Context<AppEnv>): Promise<Response> {
  const secrets = signingSecrets(c)
  const { keyId } = c.get('principal')
  const token = await mintDashboardValue('dashboard-link', keyId, LINK_TTL_S, secrets[0] as string, nowS(), crypto.randomUUID())
  const url = new URL('/dashboard/link', c.req.url)
  url.searchParams.set('token', token)
  return c.json({ object: 'dashboard.link', url: url.toString(), expires_at: nowS() + LINK_TTL_S }, 201)
}
