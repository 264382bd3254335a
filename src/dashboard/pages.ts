import { html, raw } from 'hono/html'

// The dashboard's HTML: a login form and the page itself. The page is static; its script
// (/dashboard/app.js) fetches /dashboard/data and draws SVG charts, with no framework.

const STYLE = `
  :root { color-scheme: light dark; --fg: #1d2330; --muted: #667085; --bg: #f7f8fa; --card: #fff; --line: #d0d5dd; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6e8ec; --muted: #98a2b3; --bg: #111418; --card: #1a1e24; --line: #344054; } }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; gap: 1rem; align-items: center; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 1.05rem; margin: 0 auto 0 0; }
  main { padding: 1rem 1.25rem; display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; overflow-x: auto; }
  section h2 { font-size: .95rem; margin: 0 0 .5rem; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: right; padding: .25rem .5rem; border-bottom: 1px solid var(--line); }
  th:first-child, td:first-child { text-align: left; }
  .muted { color: var(--muted); }
  .error { color: #d92d20; }
  svg { width: 100%; height: 180px; display: block; }
  .legend span { margin-right: .75rem; white-space: nowrap; }
  .legend i { display: inline-block; width: .8rem; height: .2rem; vertical-align: middle; margin-right: .25rem; }
  form.login { max-width: 360px; margin: 15vh auto; display: grid; gap: .5rem; }
  input, select, button { font: inherit; padding: .4rem .6rem; }
`

function layout(title: string, body: ReturnType<typeof html>, script: string | null = null) {
  return html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${title}</title>
    <link rel="icon" href="data:," />
    <style>${raw(STYLE)}</style>
  </head>
  <body>
    ${body}${script ? html`<script src="${script}" defer></script>` : ''}
  </body>
</html>`
}

export function loginPage(message: string | null) {
  return layout(
    'Sign in: edge proxy dashboard',
    html`<form class="login" method="post" action="/dashboard/login">
      <h1>Edge proxy dashboard</h1>
      <label for="key">Admin API key</label>
      <input id="key" name="key" type="password" autocomplete="off" required />
      <button type="submit">Sign in</button>
      ${message ? html`<p class="error" role="alert">${message}</p>` : ''}
      <p class="muted">Or open a link from <code>npm run keys -- dashboard-link</code>.</p>
    </form>`,
  )
}

export function dashboardPage() {
  return layout(
    'Edge proxy dashboard',
    html`<header>
        <h1>Edge proxy: time to first token</h1>
        <label>Window <select id="window"><option value="1h" selected>1 hour</option><option value="5m">5 minutes</option><option value="24h">24 hours</option></select></label>
        <span id="status" class="muted" aria-live="polite">loading…</span>
        <form method="post" action="/dashboard/logout"><button type="submit">Sign out</button></form>
      </header>
      <main>
        <section><h2>Summary</h2><div id="summary"></div></section>
        <section><h2>Time to first token, fleet (ms)</h2><div id="chart-all"></div></section>
        <section><h2>p50 time to first token per backend (ms)</h2><div id="chart-backends"></div></section>
        <section><h2>Requests and errors per bucket</h2><div id="chart-rates"></div></section>
      </main>`,
    '/dashboard/app.js',
  )
}
