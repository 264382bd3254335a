// @ts-check
// The playground's script, plain browser JavaScript served as /playground/app.js and type-checked
// from its JSDoc (src/pages/tsconfig.json). It uses only the public API: POST /v1/streams with the
// key, then a native EventSource on the answered URL. Model output is only ever set as text.
'use strict'

/**
 * One question and its answer on the page (a clone of #turn-template).
 * @typedef {{
 *   element: HTMLElement,
 *   reasoning: HTMLDetailsElement,
 *   reasoningText: HTMLElement,
 *   answer: HTMLElement,
 *   error: HTMLElement,
 * }} Turn
 * @typedef {{ turn: Turn, source: EventSource | null, url: string | null }} Current
 * @typedef {{ role: 'user' | 'assistant', content: string }} Message
 * @typedef {{ error?: { message: string, code?: string | null } }} ErrorBody
 */

const KEY = 'playground.apiKey'
const MAX_TOKENS = 2048
/** @type {Message[]} */
let messages = []
/** @type {Current | null} */
let current = null

/**
 * The element with this id (or under `root`, this selector), of the expected kind; a missing one
 * is a bug in the page.
 * @template {Element} T
 * @param {string} selector
 * @param {{ new (): T }} kind
 * @param {ParentNode} [root]
 * @returns {T}
 */
function find(selector, kind, root = document) {
  const node = root.querySelector(selector)
  if (!(node instanceof kind)) throw new Error(`${selector} is missing from the page`)
  return node
}

/** @param {string} id */
const $ = (id) => find('#' + id, HTMLElement)
const keyInput = () => find('#api-key', HTMLInputElement)
const promptInput = () => find('#prompt', HTMLTextAreaElement)

function init() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('key')
  if (fromHash) {
    sessionStorage.setItem(KEY, fromHash)
    history.replaceState(null, '', location.pathname + location.search)
  }
  keyInput().value = sessionStorage.getItem(KEY) || ''
  keyInput().addEventListener('change', () => sessionStorage.setItem(KEY, keyInput().value.trim()))
  $('prompt-form').addEventListener('submit', (event) => {
    event.preventDefault()
    send()
  })
  promptInput().addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault()
      send()
    }
  })
  $('stop').addEventListener('click', stop)
  $('clear').addEventListener('click', () => {
    if (current) return
    messages = []
    $('conversation').textContent = ''
    hideError()
  })
}

function send() {
  const key = keyInput().value.trim()
  const text = promptInput().value.trim()
  if (current || !text) return
  if (!key) {
    showError('Enter an API key first (npm start prints one; it is DEV_API_KEY in .dev.vars).')
    return
  }
  sessionStorage.setItem(KEY, key)
  hideError()
  const turn = addTurn(text)
  messages.push({ role: 'user', content: text })
  promptInput().value = ''
  const startedAt = performance.now()
  current = { turn, source: null, url: null }
  setBusy(true, 'starting')
  resetStats()
  fetch('/v1/streams', {
    method: 'POST',
    headers: { authorization: 'Bearer ' + key, 'content-type': 'application/json' },
    // A bound on the answer leaves room for the conversation: without one the gateway gives the
    // answer all the context left, which a prompt estimated a token short fills over the limit.
    body: JSON.stringify({ messages, max_tokens: MAX_TOKENS }),
  })
    .then(async (response) => {
      /** @type {{ url: string } & ErrorBody | null} */
      const body = await response.json().catch(() => null)
      if (!response.ok || !body) throw new Error(describe(response.status, body))
      follow(turn, body.url, startedAt)
    })
    .catch((error) => {
      fail(turn, error instanceof TypeError ? 'The gateway could not be reached.' : error instanceof Error ? error.message : String(error))
    })
}

/**
 * Live figures: time to first token (from the click), tokens so far and tokens/s.
 * @param {number} startedAt
 */
function meter(startedAt) {
  /** @type {number | null} */
  let firstAt = null
  let tokens = 0
  /** @param {number} count @param {number} now */
  const showRate = (count, now) => {
    if (firstAt !== null && count > 1 && now > firstAt) $('tps').textContent = (((count - 1) * 1000) / (now - firstAt)).toFixed(1)
  }
  return {
    /** A text event: true for the first one. */
    token() {
      const now = performance.now()
      const first = firstAt === null
      if (first) {
        firstAt = now
        $('ttft').textContent = Math.round(now - startedAt) + ' ms'
      }
      tokens++
      $('tokens').textContent = String(tokens)
      showRate(tokens, now)
      return first
    },
    /** @param {number} completionTokens the count the usage event gives */
    usage(completionTokens) {
      $('tokens').textContent = String(completionTokens)
      showRate(completionTokens, performance.now())
    },
  }
}

/**
 * @param {Turn} turn
 * @param {string} url
 * @param {number} startedAt
 */
function follow(turn, url, startedAt) {
  if (!current || current.turn !== turn) {
    // Stopped while the session was being created: it never gets a reader, so end it now.
    cancel(url)
    return
  }
  const source = new EventSource(url)
  const figures = meter(startedAt)
  Object.assign(current, { source, url })
  setBusy(true, 'waiting for the first token')
  let answer = ''
  /** @param {HTMLElement} target @param {boolean} isAnswer */
  const onText = (target, isAnswer) => (/** @type {MessageEvent<string>} */ event) => {
    if (figures.token()) setBusy(true, 'streaming')
    if (isAnswer && answer === '') turn.reasoning.open = false
    const text = JSON.parse(event.data).text
    if (isAnswer) {
      // The answer begins with the blank line that follows the reasoning: not shown.
      answer += text
      target.textContent = answer.replace(/^\s+/, '')
    } else {
      target.textContent += text
    }
  }
  source.addEventListener('reasoning', onText(turn.reasoningText, false))
  source.addEventListener('content', onText(turn.answer, true))
  source.addEventListener('usage', (event) => figures.usage(JSON.parse(event.data).completion_tokens))
  source.addEventListener('done', (event) => {
    source.close()
    messages.push({ role: 'assistant', content: answer })
    finish('done (' + JSON.parse(event.data).finish_reason + ')')
    turn.element.dataset.state = 'done'
  })
  source.addEventListener('error', (event) => onStreamError(source, turn, event))
}

/**
 * Two kinds share the name: the stream's own error event (it has data) and the browser's
 * connection error (no data). EventSource retries a dropped connection by itself.
 * @param {EventSource} source
 * @param {Turn} turn
 * @param {Event} event
 */
function onStreamError(source, turn, event) {
  if (event instanceof MessageEvent && typeof event.data === 'string') {
    source.close()
    /** @type {ErrorBody} */
    const body = JSON.parse(event.data)
    const error = body.error ?? { message: 'The stream failed.' }
    fail(turn, error.message + (error.code ? ' (' + error.code + ')' : ''))
  } else if (source.readyState === EventSource.CLOSED) {
    fail(turn, 'The stream could not be opened: its link expired or is not valid.')
  } else {
    setBusy(true, 'reconnecting')
  }
}

function stop() {
  if (!current) return
  const { turn, source, url } = current
  if (source) source.close()
  if (url) cancel(url)
  messages.pop()
  finish('stopped')
  turn.element.dataset.state = 'stopped'
}

/**
 * Stops the session's generation (its cancel URL is signed like its event URL).
 * @param {string} eventsUrl
 */
function cancel(eventsUrl) {
  fetch(eventsUrl.replace('/events?', '/cancel?'), { method: 'POST' }).catch(() => {})
}

/**
 * @param {Turn} turn
 * @param {string} message
 */
function fail(turn, message) {
  if (current && current.source) current.source.close()
  messages.pop()
  turn.error.textContent = message
  turn.error.hidden = false
  if (turn.reasoningText.textContent === '') turn.reasoning.hidden = true
  turn.element.dataset.state = 'error'
  finish('failed')
}

/** @param {string} state */
function finish(state) {
  current = null
  setBusy(false, state)
}

/**
 * @param {number} status
 * @param {ErrorBody | null} body
 */
function describe(status, body) {
  const error = body && body.error
  if (!error) return 'The gateway answered HTTP ' + status + '.'
  return error.message + ' (HTTP ' + status + (error.code ? ', ' + error.code : '') + ')'
}

/**
 * @param {string} text
 * @returns {Turn}
 */
function addTurn(text) {
  const template = find('#turn-template', HTMLTemplateElement)
  const element = template.content.firstElementChild?.cloneNode(true)
  if (!(element instanceof HTMLElement)) throw new Error('#turn-template is empty')
  find('.user', HTMLElement, element).textContent = text
  $('conversation').appendChild(element)
  return {
    element,
    reasoning: find('.reasoning', HTMLDetailsElement, element),
    reasoningText: find('.reasoning-text', HTMLElement, element),
    answer: find('.answer', HTMLElement, element),
    error: find('.turn-error', HTMLElement, element),
  }
}

function resetStats() {
  $('ttft').textContent = '-'
  $('tps').textContent = '-'
  $('tokens').textContent = '-'
}

/**
 * @param {boolean} busy
 * @param {string} state
 */
function setBusy(busy, state) {
  find('#send', HTMLButtonElement).disabled = busy
  find('#stop', HTMLButtonElement).disabled = !busy
  $('state').textContent = state
}

/** @param {string} message */
function showError(message) {
  $('error').textContent = message
  $('error').hidden = false
}

function hideError() {
  $('error').hidden = true
}

init()
