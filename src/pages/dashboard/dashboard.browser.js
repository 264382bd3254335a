'use strict'
const COLORS = ['#2e90fa', '#f79009', '#12b76a', '#ee46bc', '#7a5af8', '#f04438', '#06aed4', '#667085']
const REFRESH_MS = 5000
const $ = (id) => document.getElementById(id)
const SVG = 'http://www.w3.org/2000/svg'

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag)
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value))
  if (parent) parent.appendChild(node)
  return node
}

function clock(t, bucketMs) {
  const d = new Date(t)
  return bucketMs >= 3600000 ? d.getHours() + ':00' : d.toTimeString().slice(0, 5)
}

// lines: [{ name, color, values: (number|null)[] }], times: number[]
function lineChart(container, times, lines, bucketMs) {
  container.textContent = ''
  const width = 600, height = 180, left = 44, bottom = 20, top = 8
  const svg = el('svg', { viewBox: '0 0 ' + width + ' ' + height, role: 'img' }, container)
  const all = lines.flatMap((line) => line.values).filter((v) => v !== null)
  const max = Math.max(1, ...all) * 1.1
  const x = (i) => left + (times.length <= 1 ? 0 : (i / (times.length - 1)) * (width - left - 4))
  const y = (v) => top + (1 - v / max) * (height - top - bottom)
  for (const frac of [0, 0.5, 1]) {
    el('line', { x1: left, x2: width, y1: y(max * frac), y2: y(max * frac), stroke: 'currentColor', 'stroke-opacity': 0.15 }, svg)
    el('text', { x: left - 4, y: y(max * frac) + 4, 'text-anchor': 'end', 'font-size': 10, fill: 'currentColor' }, svg).textContent = Math.round(max * frac)
  }
  const step = Math.max(1, Math.ceil(times.length / 6))
  times.forEach((t, i) => {
    if (i % step === 0) el('text', { x: x(i), y: height - 4, 'text-anchor': 'middle', 'font-size': 10, fill: 'currentColor' }, svg).textContent = clock(t, bucketMs)
  })
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
  const legend = document.createElement('div')
  legend.className = 'legend'
  for (const line of lines) {
    const item = document.createElement('span')
    const swatch = document.createElement('i')
    swatch.style.background = line.color
    item.append(swatch, line.name)
    legend.appendChild(item)
  }
  container.appendChild(legend)
}

function cell(row, text) {
  const td = document.createElement('td')
  td.textContent = text
  row.appendChild(td)
}

function fmt(value, digits) {
  return value === null || value === undefined ? '–' : Number(value).toFixed(digits)
}

function summaryTable(report) {
  const table = document.createElement('table')
  const head = table.createTHead().insertRow()
  for (const title of ['backend', 'requests', 'TTFT p50', 'p90', 'p99', 'backend p50', 'tok/s p50', 'errors', 'aborts']) {
    const th = document.createElement('th')
    th.textContent = title
    head.appendChild(th)
  }
  const body = table.createTBody()
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
    cell(row, fmt(s.decode_tokens_per_s.p50, 1))
    cell(row, (s.error_rate * 100).toFixed(1) + '%')
    cell(row, (s.abort_rate * 100).toFixed(1) + '%')
  }
  return table
}

function render(data) {
  const all = data.series.all
  const times = all.map((p) => p.t)
  const backends = Object.keys(data.series).filter((id) => id !== 'all' && id !== '-')
  $('summary').textContent = ''
  $('summary').appendChild(summaryTable(data.report))
  lineChart($('chart-all'), times, [
    { name: 'p50', color: COLORS[0], values: all.map((p) => p.p50) },
    { name: 'p90', color: COLORS[1], values: all.map((p) => p.p90) },
    { name: 'p99', color: COLORS[5], values: all.map((p) => p.p99) },
  ], data.bucketMs)
  lineChart($('chart-backends'), times, backends.map((id, i) => ({ name: id, color: COLORS[i % COLORS.length], values: data.series[id].map((p) => p.p50) })), data.bucketMs)
  lineChart($('chart-rates'), times, [
    { name: 'requests', color: COLORS[0], values: all.map((p) => p.requests) },
    { name: 'backend errors', color: COLORS[5], values: all.map((p) => p.errors) },
    { name: 'client aborts', color: COLORS[1], values: all.map((p) => p.aborts) },
    { name: 'refused', color: COLORS[7], values: all.map((p) => p.refused) },
  ], data.bucketMs)
}

async function refresh() {
  const status = $('status')
  try {
    const response = await fetch('/dashboard/data?window=' + encodeURIComponent($('window').value), { credentials: 'same-origin' })
    if (response.status === 401) {
      location.href = '/dashboard/login'
      return
    }
    const body = await response.json()
    if (!response.ok) throw new Error(body && body.error ? body.error.message : 'HTTP ' + response.status)
    render(body)
    status.className = 'muted'
    status.textContent = body.report.overall.requests + ' requests · updated ' + new Date().toLocaleTimeString()
    document.body.dataset.loaded = 'true'
  } catch (error) {
    status.className = 'error'
    status.textContent = 'Could not load data: ' + error.message
  }
}

$('window').addEventListener('change', refresh)
refresh()
setInterval(refresh, REFRESH_MS)
