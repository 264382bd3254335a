// The dashboard's Keys section in real headless Chromium: the page and its script as served
// (src/pages/dashboard/), its data endpoints answered by a stand-in with a known board and history,
// so the test checks what the page draws from them: the board's rows and a key's chart of tokens
// per day. (test/routes/dashboard.test.ts checks the endpoints themselves in the Worker.)
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../scripts/processes.ts'
import { ARTIFACTS, launchChromium, type RunningBrowser } from '../support/browser.ts'

const PAGES = join(ROOT, 'src/pages/dashboard')
const NEAR = 'key_00000000000000a1'
const FLAGGED = 'key_00000000000000b2'
const now = Date.now()

const BOARD = {
  object: 'key.board',
  closest: [
    {
      key_id: NEAR,
      reported_at: now - 5_000,
      budgets: [
        { period: 'day', limit: 1000, used: 930, remaining: 70, used_ratio: 0.93, resets_at: now + 3_600_000 },
        { period: 'month', limit: 40000, used: 10000, remaining: 30000, used_ratio: 0.25, resets_at: now + 86_400_000 },
      ],
      spike: { flagged: false, hour_tokens: 300, normal_tokens: 250 },
    },
  ],
  flagged: [{ key_id: FLAGGED, reported_at: now - 2_000, budgets: [], spike: { flagged: true, hour_tokens: 80000, normal_tokens: 2000 } }],
}

function history(keyId: string, days: number) {
  const today = Math.floor(now / 86_400_000) * 86_400_000
  return {
    object: 'key.usage_history',
    key_id: keyId,
    days: Array.from({ length: days }, (_, i) => {
      const used =
        i === days - 1 ? { prompt: 200, completion: 700 } : i % 3 === 0 ? { prompt: 50, completion: 100 } : { prompt: 0, completion: 0 }
      return {
        date: new Date(today - (days - 1 - i) * 86_400_000).toISOString().slice(0, 10),
        requests: used.prompt > 0 ? 2 : 0,
        prompt_tokens: used.prompt,
        completion_tokens: used.completion,
        total_tokens: used.prompt + used.completion,
      }
    }),
  }
}

const percentiles = { p50: null, p90: null, p99: null }
const summary = {
  requests: 0,
  ttft_ms: { backend: percentiles, client: percentiles },
  decode_tokens_per_s: percentiles,
  error_rate: 0,
  abort_rate: 0,
}

let server: Server
let base: string
let chromium: RunningBrowser
const asked: string[] = []

beforeAll(async () => {
  server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost')
    asked.push(url.pathname + url.search)
    const json = (body: unknown, status = 200) => {
      response.writeHead(status, { 'content-type': 'application/json' })
      response.end(JSON.stringify(body))
    }
    const file = (name: string, type: string) => {
      response.writeHead(200, { 'content-type': type })
      response.end(readFileSync(join(PAGES, name)))
    }
    const usage = /^\/dashboard\/keys\/(key_[0-9a-f]{16})\/usage$/.exec(url.pathname)
    if (url.pathname === '/dashboard') file('dashboard.html', 'text/html; charset=utf-8')
    else if (url.pathname === '/dashboard/app.js') file('dashboard.browser.js', 'text/javascript; charset=utf-8')
    else if (url.pathname === '/dashboard/style.css') file('dashboard.css', 'text/css; charset=utf-8')
    else if (url.pathname === '/dashboard/data')
      json({ window: '1h', bucketMs: 60_000, series: { all: [] }, report: { overall: summary, backends: {} } })
    else if (url.pathname === '/dashboard/keys') json(BOARD)
    else if (usage) json(history(usage[1] as string, Number(url.searchParams.get('days'))))
    else json({ error: { message: 'not here' } }, 404)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  chromium = await launchChromium()
}, 60_000)

afterAll(async () => {
  await chromium?.close()
  await new Promise((resolve) => server?.close(resolve))
})

describe("the dashboard's Keys section in Chromium", () => {
  it('lists the board, and charts the tokens per day of a key picked from it or typed in', async () => {
    const page = await chromium.browser.newPage({ viewport: { width: 1280, height: 1400 } })
    const problems: string[] = []
    page.on('pageerror', (error) => problems.push(error.message))
    await page.goto(`${base}/dashboard`)
    await page.waitForSelector('body[data-keys-loaded="true"]', { timeout: 10_000 })

    const rows = (id: string) =>
      page.$$eval(`#${id} tbody tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')))
    const closest = await rows('keys-closest')
    expect(closest).toHaveLength(1)
    expect(closest[0]?.[0]).toBe(NEAR)
    expect(closest[0]?.[1]).toBe('93.0% of 1000')
    expect(closest[0]?.[2]).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/)
    expect(closest[0]?.[3]).toBe('25.0% of 40000')
    expect(closest[0]?.[5]).toMatch(/s ago$/)
    const flagged = await rows('keys-flagged')
    expect(flagged).toEqual([[FLAGGED, '80000', '2000', '40.0', expect.stringMatching(/s ago$/)]])

    // A key from the board: its last 30 days, a bar group per day, today's the tallest.
    await page.click('#keys-closest button.key-link')
    await page.waitForSelector('#chart-key-usage[data-key] svg')
    const days = await page.$$eval('#chart-key-usage g[data-date]', (groups) =>
      groups.map((g) => ({
        date: g.getAttribute('data-date'),
        total: Number(g.getAttribute('data-total')),
        bars: g.querySelectorAll('rect').length,
      })),
    )
    expect(days).toHaveLength(30)
    expect(days.at(-1)).toMatchObject({ date: new Date(now).toISOString().slice(0, 10), total: 900, bars: 2 })
    expect(days.filter((day) => day.total === 0).every((day) => day.bars === 0)).toBe(true)
    expect(await page.textContent('#key-usage-status')).toContain(`${NEAR}: `)
    expect(asked).toContain(`/dashboard/keys/${NEAR}/usage?days=30`)

    // A typed key over 90 days.
    await page.fill('#key-id', FLAGGED)
    await page.selectOption('#key-days', '90')
    await page.click('#key-usage-form button[type=submit]')
    await page.waitForSelector(`#chart-key-usage[data-key="${FLAGGED}"]`)
    await page.waitForFunction("document.querySelectorAll('#chart-key-usage g[data-date]').length === 90")
    expect(asked).toContain(`/dashboard/keys/${FLAGGED}/usage?days=90`)

    // Something that is no key id is refused in the page, before any request.
    const before = asked.length
    await page.fill('#key-id', 'sk-not-an-id')
    await page.click('#key-usage-form button[type=submit]')
    expect(await page.textContent('#key-usage-status')).toContain('key_ and 16 hex digits')
    expect(asked.slice(before).some((path) => path.includes('/usage'))).toBe(false)

    await page.locator('section.keys').screenshot({ path: join(ARTIFACTS, 'dashboard-keys.png') })
    expect(problems).toEqual([])
    await page.close()
  })
})
