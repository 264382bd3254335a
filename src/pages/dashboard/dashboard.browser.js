// @ts-check
// The dashboard page's script, served as /dashboard/app.js behind the session (a separate file, so
// the page's Content-Security-Policy can forbid inline scripts). Plain browser JavaScript, no
// framework, type-checked from its JSDoc (src/pages/tsconfig.json): it fetches /dashboard/data
// every few seconds and draws SVG line charts; the Keys section fetches the board of keys from
// /dashboard/keys and a key's tokens per day from /dashboard/keys/ID/usage (src/telemetry/key-usage.ts).
'use strict'

/**
 * What GET /dashboard/data answers (src/dashboard/series.ts and src/routes/latency.ts), as far as
 * this page reads it.
 * @typedef {{ p50: number | null, p90: number | null, p99: number | null }} Percentiles
 * @typedef {{ t: number, requests: number, errors: number, aborts: number, refused: number, edgeWaitP90?: number | null } & Percentiles} SeriesPoint
 * @typedef {{
 *   requests: number,
 *   ttft_ms: { backend: Percentiles, client: Percentiles },
 *   edge_wait_ms?: Percentiles & { waited: number },
 *   decode_tokens_per_s: Percentiles,
 *   error_rate: number,
 *   abort_rate: number,
 * }} Summary
 * @typedef {{ overall: Summary, backends: Record<string, Summary> }} Report
 * @typedef {{ bucketMs: number, series: Record<string, SeriesPoint[]>, report: Report }} DashboardData
 * @typedef {{ name: string, color: string, values: (number | null)[] }} Line
 *
 * What GET /dashboard/keys and GET /dashboard/keys/ID/usage answer (src/telemetry/key-usage.ts).
 * @typedef {{ period: string, limit: number, used: number, remaining: number, used_ratio: number | null, resets_at: number }} BoardBudget
 * @typedef {{ key_id: string, reported_at: number, budgets: BoardBudget[], spike: { flagged: boolean, hour_tokens: number, normal_tokens: number } }} BoardEntry
 * @typedef {{ closest: BoardEntry[], flagged: BoardEntry[] }} KeyBoard
 * @typedef {{ date: string, requests: number, prompt_tokens: number, completion_tokens: number, total_tokens: number }} UsageDay
 * @typedef {{ key_id: string, days: UsageDay[] }} UsageHistory
 */

const COLORS = ['#2e90fa', '#f79009', '#12b76a', '#ee46bc', '#7a5af8', '#f04438', '#06aed4', '#667085']
/** @param {number} i */
const color = (i) => COLORS[i % COLORS.length] ?? 'currentColor'
const REFRESH_MS = 5000
const SVG = 'http://www.w3.org/2000/svg'

/**
 * The page's element with this id, of the expected kind; a missing one is a bug in the page.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new (): T }} kind
 * @returns {T}
 */
function byId(id, kind) {
  const node = document.getElementById(id)
  if (!(node instanceof kind)) throw new Error(`#${id} is missing from the page`)
  return node
}

/** @param {string} id */
const $ = (id) => byId(id, HTMLElement)

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @param {Element} [parent]
 * @returns {SVGElement}
 */
function el(tag, attrs, parent) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG, tag))
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value))
  if (parent) parent.appendChild(node)
  return node
}

/**
 * @param {number} t
 * @param {number} bucketMs
 */
function clock(t, bucketMs) {
  const d = new Date(t)
  return bucketMs >= 3600000 ? d.getHours() + ':00' : d.toTimeString().slice(0, 5)
}

/**
 * The axes: three value lines and their labels, and about six time labels.
 * @param {SVGElement} svg
 * @param {number[]} times
 * @param {number} bucketMs
 * @param {{ width: number, height: number, left: number, max: number, x: (i: number) => number, y: (v: number) => number }} frame
 */
function axes(svg, times, bucketMs, frame) {
  const { width, height, left, max, x, y } = frame
  for (const frac of [0, 0.5, 1]) {
    el('line', { x1: left, x2: width, y1: y(max * frac), y2: y(max * frac), stroke: 'currentColor', 'stroke-opacity': 0.15 }, svg)
    el('text', { x: left - 4, y: y(max * frac) + 4, 'text-anchor': 'end', 'font-size': 10, fill: 'currentColor' }, svg).textContent =
      String(Math.round(max * frac))
  }
  const step = Math.max(1, Math.ceil(times.length / 6))
  times.forEach((t, i) => {
    if (i % step === 0)
      el('text', { x: x(i), y: height - 4, 'text-anchor': 'middle', 'font-size': 10, fill: 'currentColor' }, svg).textContent = clock(
        t,
        bucketMs,
      )
  })
}

/**
 * @param {Line[]} lines
 * @returns {HTMLDivElement}
 */
function legend(lines) {
  const box = document.createElement('div')
  box.className = 'legend'
  for (const line of lines) {
    const item = document.createElement('span')
    const swatch = document.createElement('i')
    swatch.style.background = line.color
    item.append(swatch, line.name)
    box.appendChild(item)
  }
  return box
}

/**
 * @param {HTMLElement} container
 * @param {number[]} times
 * @param {Line[]} lines
 * @param {number} bucketMs
 */
function lineChart(container, times, lines, bucketMs) {
  container.textContent = ''
  const width = 600,
    height = 180,
    left = 44,
    bottom = 20,
    top = 8
  const svg = el('svg', { viewBox: '0 0 ' + width + ' ' + height, role: 'img' }, container)
  const all = lines.flatMap((line) => line.values).filter((v) => v !== null)
  const max = Math.max(1, ...all) * 1.1
  /** @param {number} i */
  const x = (i) => left + (times.length <= 1 ? 0 : (i / (times.length - 1)) * (width - left - 4))
  /** @param {number} v */
  const y = (v) => top + (1 - v / max) * (height - top - bottom)
  axes(svg, times, bucketMs, { width, height, left, max, x, y })
  for (const line of lines) {
    let d = ''
    line.values.forEach((v, i) => {
      if (v === null) return
      d += (d === '' || line.values[i - 1] === null ? 'M' : 'L') + x(i).toFixed(1) + ' ' + y(v).toFixed(1) + ' '
    })
    if (d) el('path', { d, fill: 'none', stroke: line.color, 'stroke-width': 2, 'data-series': line.name }, svg)
    // A dot per point too: a bucket with no neighbour (the first minute of traffic) has no line.
    line.values.forEach((v, i) => {
      if (v !== null) el('circle', { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: line.color }, svg)
    })
  }
  container.appendChild(legend(lines))
}

/**
 * @param {HTMLTableRowElement} row
 * @param {string} text
 */
function cell(row, text) {
  const td = document.createElement('td')
  td.textContent = text
  row.appendChild(td)
}

/**
 * @param {number | null | undefined} value
 * @param {number} digits
 */
function fmt(value, digits) {
  return value === null || value === undefined ? '–' : Number(value).toFixed(digits)
}

/** @param {Report} report */
function summaryTable(report) {
  const table = document.createElement('table')
  const head = table.createTHead().insertRow()
  for (const title of ['backend', 'requests', 'TTFT p50', 'p90', 'p99', 'backend p50', 'edge wait p90', 'tok/s p50', 'errors', 'aborts']) {
    const th = document.createElement('th')
    th.textContent = title
    head.appendChild(th)
  }
  const body = table.createTBody()
  /** @type {[string, Summary][]} */
  const rows = Object.entries(report.backends).concat([['all', report.overall]])
  for (const [id, s] of rows) {
    const row = body.insertRow()
    row.dataset.backend = id
    cell(row, id)
    cell(row, String(s.requests))
    cell(row, fmt(s.ttft_ms.client.p50, 0))
    cell(row, fmt(s.ttft_ms.client.p90, 0))
    cell(row, fmt(s.ttft_ms.client.p99, 0))
    cell(row, fmt(s.ttft_ms.backend.p50, 0))
    // Waiting for a free slot at the edge (a full fleet): part of the client's TTFT, not the backend's.
    cell(row, fmt(s.edge_wait_ms?.p90, 0))
    cell(row, fmt(s.decode_tokens_per_s.p50, 1))
    cell(row, (s.error_rate * 100).toFixed(1) + '%')
    cell(row, (s.abort_rate * 100).toFixed(1) + '%')
  }
  return table
}

/** @param {DashboardData} data */
function render(data) {
  const all = data.series.all ?? []
  const times = all.map((p) => p.t)
  const backends = Object.keys(data.series).filter((id) => id !== 'all' && id !== '-')
  $('summary').textContent = ''
  $('summary').appendChild(summaryTable(data.report))
  const charts = {
    'chart-all': [
      { name: 'p50', color: color(0), values: all.map((p) => p.p50) },
      { name: 'p90', color: color(1), values: all.map((p) => p.p90) },
      { name: 'p99', color: color(5), values: all.map((p) => p.p99) },
      { name: 'edge wait p90', color: color(7), values: all.map((p) => p.edgeWaitP90 ?? null) },
    ],
    'chart-backends': backends.map((id, i) => ({ name: id, color: color(i), values: (data.series[id] ?? []).map((p) => p.p50) })),
    'chart-rates': [
      { name: 'requests', color: color(0), values: all.map((p) => p.requests) },
      { name: 'backend errors', color: color(5), values: all.map((p) => p.errors) },
      { name: 'client aborts', color: color(1), values: all.map((p) => p.aborts) },
      { name: 'refused', color: color(7), values: all.map((p) => p.refused) },
    ],
  }
  for (const [id, series] of Object.entries(charts)) lineChart($(id), times, series, data.bucketMs)
}

/**
 * A JSON answer of the dashboard's own endpoints; a lost session goes back to the login form.
 * @param {string} path
 * @returns {Promise<unknown>}
 */
async function getJson(path) {
  const response = await fetch(path, { credentials: 'same-origin' })
  if (response.status === 401) {
    location.href = '/dashboard/login'
    throw new Error('signed out')
  }
  const body = await response.json()
  if (!response.ok) throw new Error(body && body.error ? body.error.message : 'HTTP ' + response.status)
  return body
}

/**
 * @param {string[]} titles
 * @returns {[HTMLTableElement, HTMLTableSectionElement]}
 */
function table(titles) {
  const node = document.createElement('table')
  const head = node.createTHead().insertRow()
  for (const title of titles) {
    const th = document.createElement('th')
    th.textContent = title
    head.appendChild(th)
  }
  return [node, node.createTBody()]
}

/**
 * The key id cell: a button that charts the key below.
 * @param {HTMLTableRowElement} row
 * @param {string} keyId
 */
function keyCell(row, keyId) {
  const td = document.createElement('td')
  const button = document.createElement('button')
  button.type = 'button'
  button.className = 'key-link'
  button.textContent = keyId
  button.title = 'Chart its tokens per day'
  button.addEventListener('click', () => {
    byId('key-id', HTMLInputElement).value = keyId
    void showKeyUsage()
  })
  td.appendChild(button)
  row.appendChild(td)
}

/** @param {number} ms */
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  return s < 90 ? s + ' s ago' : Math.round(s / 60) + ' min ago'
}

/** @param {number} ms */
function utc(ms) {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ') + ' UTC'
}

const PERIODS = ['day', 'month']

/** @param {KeyBoard} board */
function renderBoard(board) {
  const closest = $('keys-closest')
  closest.textContent = ''
  if (board.closest.length === 0) closest.textContent = 'No key with a budget was used in the last hour.'
  else {
    const [node, body] = table(['key', 'today', 'resets', 'this month', 'resets', 'reported'])
    for (const entry of board.closest) {
      const row = body.insertRow()
      row.dataset.key = entry.key_id
      keyCell(row, entry.key_id)
      for (const period of PERIODS) {
        const budget = entry.budgets.find((b) => b.period === period)
        cell(row, budget && budget.limit > 0 ? fmt((budget.used / budget.limit) * 100, 1) + '% of ' + budget.limit : '–')
        cell(row, budget ? utc(budget.resets_at) : '–')
      }
      cell(row, ago(entry.reported_at))
    }
    closest.appendChild(node)
  }
  const flagged = $('keys-flagged')
  flagged.textContent = ''
  if (board.flagged.length === 0) flagged.textContent = 'No key is flagged.'
  else {
    const [node, body] = table(['key', 'last hour (tokens)', 'normal', '× normal', 'reported'])
    for (const entry of board.flagged) {
      const row = body.insertRow()
      row.dataset.key = entry.key_id
      keyCell(row, entry.key_id)
      cell(row, String(entry.spike.hour_tokens))
      cell(row, String(entry.spike.normal_tokens))
      cell(row, entry.spike.normal_tokens > 0 ? fmt(entry.spike.hour_tokens / entry.spike.normal_tokens, 1) : '–')
      cell(row, ago(entry.reported_at))
    }
    flagged.appendChild(node)
  }
}

async function refreshKeys() {
  const status = $('keys-status')
  try {
    renderBoard(/** @type {KeyBoard} */ (await getJson('/dashboard/keys')))
    status.className = 'muted'
    status.textContent = 'Keys used in the last hour; updated ' + new Date().toLocaleTimeString()
    document.body.dataset.keysLoaded = 'true'
  } catch (error) {
    status.className = 'error'
    status.textContent = 'Could not load the board of keys: ' + (error instanceof Error ? error.message : String(error))
  }
}

/**
 * Tokens per UTC day as stacked bars: prompt below, completion above.
 * @param {HTMLElement} container
 * @param {UsageDay[]} days
 */
function usageChart(container, days) {
  container.textContent = ''
  const width = 600,
    height = 180,
    left = 52,
    bottom = 20,
    top = 8
  const svg = el('svg', { viewBox: '0 0 ' + width + ' ' + height, role: 'img' }, container)
  const max = Math.max(1, ...days.map((d) => d.total_tokens)) * 1.1
  const slot = (width - left - 4) / Math.max(1, days.length)
  /** @param {number} i */
  const x = (i) => left + i * slot
  /** @param {number} v */
  const y = (v) => top + (1 - v / max) * (height - top - bottom)
  for (const frac of [0, 0.5, 1]) {
    el('line', { x1: left, x2: width, y1: y(max * frac), y2: y(max * frac), stroke: 'currentColor', 'stroke-opacity': 0.15 }, svg)
    el('text', { x: left - 4, y: y(max * frac) + 4, 'text-anchor': 'end', 'font-size': 10, fill: 'currentColor' }, svg).textContent =
      String(Math.round(max * frac))
  }
  const step = Math.max(1, Math.ceil(days.length / 6))
  days.forEach((day, i) => {
    const group = el('g', { 'data-date': day.date, 'data-total': day.total_tokens }, svg)
    el('title', {}, group).textContent =
      day.date +
      ': ' +
      day.total_tokens +
      ' tokens (' +
      day.prompt_tokens +
      ' prompt, ' +
      day.completion_tokens +
      ' completion), ' +
      day.requests +
      ' requests'
    const bar = Math.max(1, slot - 1)
    const promptTop = y(day.prompt_tokens)
    const totalTop = y(day.total_tokens)
    if (day.prompt_tokens > 0)
      el(
        'rect',
        { x: x(i).toFixed(1), y: promptTop.toFixed(1), width: bar.toFixed(1), height: (y(0) - promptTop).toFixed(1), fill: color(0) },
        group,
      )
    if (day.completion_tokens > 0)
      el(
        'rect',
        { x: x(i).toFixed(1), y: totalTop.toFixed(1), width: bar.toFixed(1), height: (promptTop - totalTop).toFixed(1), fill: color(1) },
        group,
      )
    if (i % step === 0)
      el('text', { x: x(i) + bar / 2, y: height - 4, 'text-anchor': 'middle', 'font-size': 10, fill: 'currentColor' }, svg).textContent =
        day.date.slice(5)
  })
  container.appendChild(
    legend([
      { name: 'prompt tokens', color: color(0), values: [] },
      { name: 'completion tokens', color: color(1), values: [] },
    ]),
  )
}

/** Charts the key in the form's field over the chosen days (30 or 90). */
async function showKeyUsage() {
  const keyId = byId('key-id', HTMLInputElement).value.trim()
  const status = $('key-usage-status')
  if (!/^key_[0-9a-f]{16}$/.test(keyId)) {
    status.className = 'error'
    status.textContent = 'A key id is key_ and 16 hex digits.'
    return
  }
  const days = byId('key-days', HTMLSelectElement).value
  try {
    const history = /** @type {UsageHistory} */ (
      await getJson('/dashboard/keys/' + encodeURIComponent(keyId) + '/usage?days=' + encodeURIComponent(days))
    )
    usageChart($('chart-key-usage'), history.days)
    const total = history.days.reduce((sum, d) => sum + d.total_tokens, 0)
    const requests = history.days.reduce((sum, d) => sum + d.requests, 0)
    status.className = 'muted'
    status.textContent = history.key_id + ': ' + total + ' tokens, ' + requests + ' requests over ' + history.days.length + ' days (UTC)'
    $('chart-key-usage').dataset.key = history.key_id
  } catch (error) {
    status.className = 'error'
    status.textContent = 'Could not load the key’s usage: ' + (error instanceof Error ? error.message : String(error))
  }
}

async function refresh() {
  const status = $('status')
  try {
    const response = await fetch('/dashboard/data?window=' + encodeURIComponent(byId('window', HTMLSelectElement).value), {
      credentials: 'same-origin',
    })
    if (response.status === 401) {
      location.href = '/dashboard/login'
      return
    }
    const body = await response.json()
    if (!response.ok) throw new Error(body && body.error ? body.error.message : 'HTTP ' + response.status)
    const data = /** @type {DashboardData} */ (body)
    render(data)
    status.className = 'muted'
    status.textContent = data.report.overall.requests + ' requests · updated ' + new Date().toLocaleTimeString()
    document.body.dataset.loaded = 'true'
  } catch (error) {
    status.className = 'error'
    status.textContent = 'Could not load data: ' + (error instanceof Error ? error.message : String(error))
  }
}

$('window').addEventListener('change', refresh)
byId('key-usage-form', HTMLFormElement).addEventListener('submit', (event) => {
  event.preventDefault()
  void showKeyUsage()
})
$('key-days').addEventListener('change', () => {
  if (byId('key-id', HTMLInputElement).value.trim() !== '') void showKeyUsage()
})
refresh()
refreshKeys()
let ticks = 0
setInterval(() => {
  refresh()
  refreshKeys()
  // A key's days change slowly: its chart is read again every sixth refresh (30 s).
  if (++ticks % 6 === 0 && $('chart-key-usage').dataset.key) void showKeyUsage()
}, REFRESH_MS)
