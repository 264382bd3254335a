// The body of combo.js and its variants (combo-noprobe, combo-sharedprobe, combo-jssink; see there).
import { Writer, fetchUpstream, pumpParsed } from './_parts.js'

/** The upstream call's idle deadline (wrangler.toml's EVENT_IDLE_TIMEOUT_MS). */
const IDLE_MS = 30_000

export async function comboFetch(request, env, { probe, sharedProbe = false, sink = 'identity', json = false }) {
  const controller = new AbortController()
  const onClientAbort = () => controller.abort('client_gone')
  request.signal.addEventListener('abort', onClientAbort, { once: true })
  let lastEventAt = Date.now()
  const watch = () => {
    const dueAt = lastEventAt + IDLE_MS
    if (Date.now() >= dueAt) controller.abort('idle_timeout')
    else timer = setTimeout(watch, dueAt - Date.now())
  }
  let timer = setTimeout(watch, IDLE_MS)
  const end = () => {
    clearTimeout(timer)
    request.signal.removeEventListener('abort', onClientAbort)
  }
  const response = json ? await fetchJson(request, env, controller.signal) : await fetchUpstream(request, env, controller.signal)
  const out = new Writer(sink, { probe, sharedProbe, onGone: () => controller.abort('client_gone') })
  pumpParsed(
    response.body.getReader(),
    (text) => {
      lastEventAt = Date.now()
      out.writeText(text)
    },
    controller.signal,
  ).then(
    () => {
      end()
      out.close()
    },
    () => {
      end()
      out.gone()
    },
  )
  return new Response(out.body, response)
}

/**
 * The upstream request as the gateway sends it (src/dispatch/upstream.ts): the client's body read
 * and parsed in JS, sent on as a JSON string with headers built from nothing, redirect: manual.
 */
async function fetchJson(request, env, signal) {
  const body = await request.json()
  const url = new URL(request.url)
  return fetch(new URL(url.pathname, env.UPSTREAM), {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      'x-request-id': crypto.randomUUID().replaceAll('-', ''),
      authorization: request.headers.get('authorization') ?? '',
    },
    body: JSON.stringify(body),
    signal,
    redirect: 'manual',
  })
}
