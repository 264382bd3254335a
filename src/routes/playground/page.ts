// The playground's HTML. Static: everything dynamic is done by app.js through the public API,
// and model output is only ever set as text (textContent), never parsed as HTML.
export const PLAYGROUND_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DeepSeek-R1 playground</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/playground/style.css">
<script src="/playground/app.js" defer></script>
</head>
<body>
<header>
  <h1>DeepSeek-R1 playground</h1>
  <p>Each answer streams through <code>POST /v1/streams</code> and the browser's own <code>EventSource</code>, which resumes by itself after a dropped connection.</p>
</header>
<section id="key-box">
  <label for="api-key">API key</label>
  <input id="api-key" type="password" autocomplete="off" spellcheck="false" placeholder="sk-...">
  <small>Kept in this tab only (sessionStorage); <code>#key=sk-...</code> in the address also sets it.</small>
</section>
<main id="conversation" aria-live="polite"></main>
<div id="error" role="alert" hidden></div>
<form id="prompt-form">
  <textarea id="prompt" rows="3" placeholder="Ask something. Ctrl+Enter sends." required></textarea>
  <div class="actions">
    <button id="send" type="submit">Send</button>
    <button id="stop" type="button" disabled>Stop</button>
    <button id="clear" type="button">New chat</button>
  </div>
</form>
<footer id="stats">
  <span>time to first token <b id="ttft">-</b></span>
  <span>tokens/s <b id="tps">-</b></span>
  <span>tokens <b id="tokens">-</b></span>
  <span id="state">idle</span>
</footer>
<template id="turn-template">
  <section class="turn">
    <div class="user"></div>
    <details class="reasoning" open><summary>Reasoning</summary><div class="reasoning-text"></div></details>
    <div class="answer"></div>
    <div class="turn-error" hidden></div>
  </section>
</template>
</body>
</html>
`

export const PLAYGROUND_CSS = `:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; --accent: #2563eb; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 0 auto; padding: 1rem; }
header p, small { color: var(--muted); }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
#key-box { display: grid; gap: .25rem; margin: 1rem 0; }
input, textarea { width: 100%; font: inherit; padding: .5rem; border: 1px solid var(--line); border-radius: 6px; }
.actions { display: flex; gap: .5rem; margin-top: .5rem; }
button { font: inherit; padding: .4rem 1rem; border-radius: 6px; border: 1px solid var(--line); cursor: pointer; }
button[type=submit] { background: var(--accent); color: white; border-color: var(--accent); }
button:disabled { opacity: .5; cursor: default; }
.turn { border-top: 1px solid var(--line); padding: .75rem 0; }
.user { font-weight: 600; white-space: pre-wrap; margin-bottom: .5rem; }
.reasoning { color: var(--muted); margin-bottom: .5rem; }
.reasoning summary { cursor: pointer; }
.reasoning-text, .answer { white-space: pre-wrap; }
.reasoning-text { font-size: .9em; border-left: 3px solid var(--line); padding-left: .75rem; }
.turn-error, #error { color: var(--bad); border: 1px solid var(--bad); border-radius: 6px; padding: .5rem; margin: .5rem 0; }
#stats { display: flex; flex-wrap: wrap; gap: 1rem; margin-top: 1rem; color: var(--muted); font-variant-numeric: tabular-nums; }
#stats b { color: CanvasText; }
`
