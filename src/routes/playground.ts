import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import PLAYGROUND_CSS from '../pages/playground/playground.css'
import PLAYGROUND_HTML from '../pages/playground/playground.html'
import PLAYGROUND_JS from '../pages/playground/playground.browser.js'

// GET /playground: a small chat page on the browser streaming flow (docs/streams.md). Loading it
// needs no key; the page asks for one and calls the API with it like any other client. The page,
// its script and its style are files in src/pages/playground/, imported as text.

/**
 * The page may load its own script and style and talk to this Worker only: model output that
 * tried to be markup could run nothing, and nothing could leave for another origin.
 */
const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const COMMON = { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' }

export function playgroundPage(c: Context<AppEnv>): Response {
  return c.body(PLAYGROUND_HTML, 200, {
    ...COMMON,
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': PAGE_CSP,
    'referrer-policy': 'no-referrer',
  })
}

export function playgroundScript(c: Context<AppEnv>): Response {
  return c.body(PLAYGROUND_JS, 200, { ...COMMON, 'content-type': 'text/javascript; charset=utf-8' })
}

export function playgroundStyle(c: Context<AppEnv>): Response {
  return c.body(PLAYGROUND_CSS, 200, { ...COMMON, 'content-type': 'text/css; charset=utf-8' })
}
