import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { isLocalDevelopment, LOCAL_KEY_HINT } from '../middleware/auth.ts'
import { escapeHtml } from '../pages/template.ts'

// GET /: what a person finds at the printed address. A browser (Accept: text/html) gets a small
// page, anything else a JSON object with the same content; no key needed, nothing secret in it.

const PAGES = [
  { path: '/playground', what: 'chat with the model in the browser (your API key stays in the tab)' },
  { path: '/dashboard', what: 'time to first token, errors and aborts per backend (an admin key signs in)' },
  { path: '/health', what: 'the Worker is up (no backend probe)' },
] as const

const API = [
  'POST /v1/chat/completions',
  'POST /v1/responses',
  'GET /v1/responses/{id}',
  'GET /v1/models',
  'POST /v1/streams',
  'POST /v1/stream-tokens',
] as const

const DOCS = ['README.md', 'docs/api.md'] as const

/** No script, no style, no forms: the page is links and text only. */
const PAGE_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export function home(c: Context<AppEnv>): Response {
  const model = c.get('config').modelId
  const local = isLocalDevelopment(c) ? LOCAL_KEY_HINT : null
  const headers = { vary: 'Accept', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' }
  if (!acceptsHtml(c.req.header('accept'))) {
    const body = {
      object: 'gateway',
      model,
      pages: Object.fromEntries(PAGES.map((page) => [page.path.slice(1), page.path])),
      api: { base: '/v1', auth: 'Authorization: Bearer sk-...', routes: API },
      docs: DOCS,
      ...(local === null ? {} : { local_key: local }),
    }
    return c.json(body, 200, headers)
  }
  return c.html(homePage(model, local), 200, { ...headers, 'content-security-policy': PAGE_CSP, 'referrer-policy': 'no-referrer' })
}

/** A browser's navigation asks for text/html; curl (*\/*) and SDKs get JSON. `q=0` refuses a type. */
export function acceptsHtml(accept: string | undefined): boolean {
  return (accept ?? '').split(',').some((range) => {
    const [type, ...params] = range.split(';').map((part) => part.trim().toLowerCase())
    if (type !== 'text/html') return false
    const q = params.find((param) => param.startsWith('q='))
    return q === undefined || Number(q.slice(2)) > 0
  })
}

function homePage(model: string, local: string | null): string {
  const pages = PAGES.map((page) => `<li><a href="${page.path}">${page.path}</a>: ${escapeHtml(page.what)}</li>`).join('\n      ')
  const api = API.map((route) => `<li><code>${escapeHtml(route)}</code></li>`).join('\n      ')
  const docs = DOCS.map((doc) => `<code>${doc}</code>`).join(' and ')
  const hint = local === null ? '' : `\n    <p><strong>Local development.</strong> ${escapeHtml(local)}</p>`
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Edge streaming proxy</title>
    <link rel="icon" href="data:," />
  </head>
  <body>
    <h1>Edge streaming proxy</h1>
    <p>An OpenAI-compatible API in front of vLLM, serving <code>${escapeHtml(model)}</code>.</p>
    <h2>Pages</h2>
    <ul>
      ${pages}
    </ul>
    <h2>API</h2>
    <p>Base URL <code>/v1</code>, with <code>Authorization: Bearer sk-...</code>:</p>
    <ul>
      ${api}
    </ul>${hint}
    <p>Documentation: ${docs} in the project's repository.</p>
  </body>
</html>
`
}
