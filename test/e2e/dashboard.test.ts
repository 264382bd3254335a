// The dashboard in real headless Chromium against the built bundle in workerd: an admin signs in
// with the form, the page draws charts from real traffic, and a screenshot is kept.
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'
import { ARTIFACTS, launchChromium, type RunningBrowser } from '../support/browser.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'e2e-dashboard-backend-key'
const ADMIN_KEY = `sk-${'a'.repeat(43)}`
const CHAT_KEY = `sk-${'c'.repeat(43)}`

let emulators: RunningEmulator[] = []
let worker: ServedWorker
let chromium: RunningBrowser

async function chat(text: string): Promise<void> {
  const response = await fetch(`${worker.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CHAT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: text }] }),
  })
  await response.text()
}

/** Waits until the LATENCY namespace shows `count` requests in the last 5 minutes (bounded). */
async function waitForLatency(count: number): Promise<void> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const response = await fetch(`${worker.url}/v1/latency?window=5m`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
    const body = (await response.json()) as { overall: { requests: number } }
    if (body.overall.requests >= count) return
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  throw new Error(`the latency aggregates did not reach ${count} requests within 20 s`)
}

const SUMMARY_HEADERS = ['backend', 'requests', 'TTFT p50', 'p90', 'p99', 'backend p50', 'edge wait p90', 'tok/s p50', 'errors', 'aborts']

/** Where the summary table sits in its card, scrolled fully left and then fully right (CSS px). */
interface SummaryGeometry {
  viewport: number
  /** The document's own width: wider than the viewport means the page scrolls sideways. */
  document: number
  card: { left: number; right: number }
  scroller: { left: number; right: number; clientWidth: number; scrollWidth: number; overflowX: string }
  /** The table's right edge, and each header's text and right edge, at scrollLeft 0 and at the end. */
  start: { table: number; headers: { text: string; left: number; right: number }[] }
  end: { table: number; headers: { text: string; left: number; right: number }[] }
}

// Runs in the page (a string: the Node program has no DOM types), returns SummaryGeometry as JSON.
const GEOMETRY = `(() => {
  const scroller = document.querySelector('#summary')
  const card = scroller.closest('section')
  const table = scroller.querySelector('table')
  const edges = () => ({
    table: table.getBoundingClientRect().right,
    headers: [...table.querySelectorAll('th')].map((th) => {
      const box = th.getBoundingClientRect()
      return { text: th.textContent, left: box.left, right: box.right }
    }),
  })
  scroller.scrollLeft = 0
  const start = edges()
  scroller.scrollLeft = scroller.scrollWidth
  const end = edges()
  scroller.scrollLeft = 0
  const cardBox = card.getBoundingClientRect()
  const box = scroller.getBoundingClientRect()
  return JSON.stringify({
    viewport: window.innerWidth,
    document: document.documentElement.scrollWidth,
    card: { left: cardBox.left, right: cardBox.right },
    scroller: {
      left: box.left,
      right: box.right,
      clientWidth: scroller.clientWidth,
      scrollWidth: scroller.scrollWidth,
      overflowX: getComputedStyle(scroller).overflowX,
    },
    start,
    end,
  })
})()`

async function summaryGeometry(page: Page): Promise<SummaryGeometry> {
  return JSON.parse((await page.evaluate(GEOMETRY)) as string) as SummaryGeometry
}

/** The card stays on the page and holds its scroller; the table is never cut off where nobody can scroll to it. */
function expectSummaryInCard(geometry: SummaryGeometry): void {
  expect(geometry.document).toBeLessThanOrEqual(geometry.viewport)
  expect(geometry.card.right).toBeLessThanOrEqual(geometry.viewport)
  expect(geometry.scroller.left).toBeGreaterThanOrEqual(geometry.card.left)
  expect(geometry.scroller.right).toBeLessThanOrEqual(geometry.card.right)
  expect(geometry.start.headers.map((header) => header.text)).toEqual(SUMMARY_HEADERS)
  // Scrolled to its end, the table's right edge and every header are inside the scroller.
  expect(geometry.end.table).toBeLessThanOrEqual(geometry.scroller.right + 0.5)
  for (const header of geometry.end.headers.slice(1)) expect(header.right, header.text).toBeLessThanOrEqual(geometry.scroller.right + 0.5)
}

beforeAll(async () => {
  const args = ['--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1', '--api-key', BACKEND_KEY, '--itl-ms', '2']
  const [script, ...started] = await Promise.all([
    buildPrivateWorker(),
    spawnEmulator([...args, '--ttft-ms', '20']),
    spawnEmulator([...args, '--ttft-ms', '60']),
  ])
  emulators = started
  worker = await serveWorker(
    script,
    {
      BACKEND_URLS: emulators.map((e) => e.url).join(','),
      BACKEND_API_KEY: BACKEND_KEY,
      STREAM_TOKEN_SECRETS: 'e2e-dashboard-signing-secret',
      TELEMETRY_BATCH_MS: '100',
      LATENCY_FLUSH_MS: '500',
    },
    {
      keys: [
        { secret: ADMIN_KEY, fields: { scopes: ['admin'] } },
        { secret: CHAT_KEY, fields: { scopes: ['chat'] } },
      ],
    },
  )
  // Distinct conversations, so routing spreads them over both backends.
  for (let i = 0; i < 24; i++) await chat(`conversation ${i}: what is ${i} + ${i}?`)
  await chat('[emulator fault=error_after:2] a failing one')
  await waitForLatency(25)
  chromium = await launchChromium()
}, 120_000)

afterAll(async () => {
  await chromium?.close()
  await worker?.dispose()
  await Promise.all(emulators.map((emulator) => emulator.stop()))
})

describe('the dashboard in Chromium', () => {
  it('signs an admin in and charts time to first token per backend from real traffic', async () => {
    const page = await chromium.browser.newPage({ viewport: { width: 1280, height: 900 } })
    const problems: string[] = []
    page.on('pageerror', (error) => problems.push(error.message))
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text())
    })
    // Chromium treats 127.0.0.1 as a secure context, so the __Host- (Secure) cookie is kept over http here.
    await page.goto(`${worker.url}/dashboard`)
    expect(new URL(page.url()).pathname).toBe('/dashboard/login')
    await page.fill('#key', ADMIN_KEY)
    await Promise.all([page.waitForURL(`${worker.url}/dashboard`), page.click('button[type=submit]')])
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 })

    const rows = await page.$$eval('#summary tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
    )
    const backendRows = rows.filter((cells) => cells[0] !== 'all' && cells[0] !== '-')
    expect(backendRows).toHaveLength(2)
    const all = rows.find((cells) => cells[0] === 'all') as (string | null)[]
    expect(Number(all[1])).toBeGreaterThanOrEqual(25)
    // Every backend's p50 is a number of milliseconds, and the slower emulator's is the higher.
    const p50s = backendRows.map((cells) => Number(cells[2]))
    expect(p50s.every((value) => value > 0)).toBe(true)
    // Lines drawn: fleet p50/p90/p99 (no edge-wait line: nobody waited), one p50 per backend, and the rates.
    expect(await page.$$eval('#chart-all path', (paths) => paths.map((p) => p.getAttribute('data-series')))).toEqual(['p50', 'p90', 'p99'])
    expect(await page.locator('#chart-backends path').count()).toBe(2)
    expect(await page.locator('#chart-rates path[data-series="requests"]').count()).toBe(1)
    // Every bucket with traffic is a visible dot, even the first minute's alone.
    expect(await page.locator('#chart-all circle').count()).toBeGreaterThanOrEqual(3)
    // At 1280 px the summary fits its card whole: every column visible, nothing to scroll.
    const wide = await summaryGeometry(page)
    expectSummaryInCard(wide)
    expect(wide.start.table).toBeLessThanOrEqual(wide.scroller.right + 0.5)
    expect(wide.scroller.scrollWidth).toBeLessThanOrEqual(wide.scroller.clientWidth)
    for (const header of wide.start.headers) expect(header.right, header.text).toBeLessThanOrEqual(wide.scroller.right + 0.5)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true })
    expect(problems).toEqual([])
    await page.close()
  })

  it('keeps the summary table in its card on a phone: the table scrolls sideways inside it, the page does not', async () => {
    const made = await fetch(`${worker.url}/v1/dashboard/links`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` } })
    const { url } = (await made.json()) as { url: string }
    const context = await chromium.browser.newContext({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 3,
    })
    const page = await context.newPage()
    await page.goto(url)
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 })
    const phone = await summaryGeometry(page)
    expectSummaryInCard(phone)
    // Too wide for 390 px, so its container scrolls: the last columns are reachable, not clipped.
    expect(phone.scroller.overflowX).toBe('auto')
    expect(phone.scroller.scrollWidth).toBeGreaterThan(phone.scroller.clientWidth)
    const aborts = phone.end.headers.find((header) => header.text === 'aborts')
    expect(aborts?.left).toBeGreaterThanOrEqual(phone.scroller.left - 0.5)
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true })
    await context.close()
  })

  it('sends a browser without a session back to the login form, and refuses a chat key there', async () => {
    const context = await chromium.browser.newContext()
    const page = await context.newPage()
    await page.goto(`${worker.url}/dashboard`)
    await page.fill('#key', CHAT_KEY)
    await page.click('button[type=submit]')
    await expect(page.locator('[role=alert]').textContent()).resolves.toContain('That key cannot open the dashboard.')
    expect((await context.cookies()).map((cookie) => cookie.name)).not.toContain('__Host-dashboard')
    await context.close()
  })

  it("refuses another site's form that posts an admin key to the sign-in (login CSRF), setting no cookie", async () => {
    const context = await chromium.browser.newContext()
    // A page on a site of its own, served by the browser's router: nothing leaves the machine.
    await context.route('http://evil.example/**', (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<form method="post" action="${worker.url}/dashboard/login"><input name="key" value="${ADMIN_KEY}"></form><script>document.forms[0].submit()</script>`,
      }),
    )
    const page = await context.newPage()
    const [answer] = await Promise.all([
      page.waitForResponse((response) => response.url() === `${worker.url}/dashboard/login`),
      page.goto('http://evil.example/'),
    ])
    expect(answer.status()).toBe(403)
    expect(await answer.text()).toContain('cross_site_request')
    expect((await context.cookies()).map((cookie) => cookie.name)).not.toContain('__Host-dashboard')
    await context.close()
  })

  it("signs in once with a link from the API, signs out with the page's button, and refuses the same link again", async () => {
    const made = await fetch(`${worker.url}/v1/dashboard/links`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_KEY}` } })
    const { url } = (await made.json()) as { url: string }
    const first = await chromium.browser.newContext()
    const page = await first.newPage()
    await page.goto(url)
    expect(new URL(page.url()).pathname).toBe('/dashboard')
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 })
    // The page's own sign-out form passes the same-origin check.
    await Promise.all([page.waitForURL(`${worker.url}/dashboard/login`), page.click('text=Sign out')])
    expect((await first.cookies()).map((cookie) => cookie.name)).not.toContain('__Host-dashboard')
    await first.close()

    const second = await chromium.browser.newContext()
    const replay = await second.newPage()
    await replay.goto(url)
    await expect(replay.locator('[role=alert]').textContent()).resolves.toContain('already been used')
    expect((await second.cookies()).map((cookie) => cookie.name)).not.toContain('__Host-dashboard')
    await second.close()
  })
})
