// The playground page in real headless Chromium against the built bundle in workerd and a vLLM
// emulator: a question typed into the page streams back with its reasoning apart from the answer,
// live first-token time and tokens/s; a bad key shows a clear error. A screenshot is kept.
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'
import { ARTIFACTS, launchChromium, type RunningBrowser } from '../support/browser.ts'
import { referenceAnswer as emulatorAnswer, type ReferenceAnswer } from '../support/reference-answer.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'e2e-playground-backend-key'
const CHAT_KEY = `sk-${'p'.repeat(43)}`
const QUESTION = '[emulator ttft_ms=150 itl_ms=15 reasoning_tokens=40 content_tokens=30] Why is the sky blue?'

let emulator: RunningEmulator
let worker: ServedWorker
let chromium: RunningBrowser

beforeAll(async () => {
  const args = ['--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1', '--api-key', BACKEND_KEY]
  const [script, started, browser] = await Promise.all([buildPrivateWorker(), spawnEmulator(args), launchChromium()])
  emulator = started
  chromium = browser
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY, STREAM_TOKEN_SECRETS: 'e2e-playground-secret' },
    {
      keys: [{ secret: CHAT_KEY, fields: { scopes: ['chat'] } }],
    },
  )
})

afterAll(async () => {
  await chromium?.close()
  await worker?.dispose()
  await emulator?.stop()
})

/** The emulator's own answer to the same message (test/support/reference-answer.ts). */
function referenceAnswer(text: string): Promise<ReferenceAnswer> {
  return emulatorAnswer(emulator.url, BACKEND_KEY, MODEL, text)
}

async function ask(page: Page, question: string): Promise<void> {
  await page.fill('#prompt', question)
  await page.click('#send')
}

describe('the playground', () => {
  it('streams an answer with its reasoning apart, first-token time and tokens/s', async () => {
    const page = await chromium.browser.newPage({ viewport: { width: 1000, height: 900 } })
    const failures: string[] = []
    page.on('pageerror', (error) => failures.push(error.message))
    page.on('console', (message) => {
      if (message.type() === 'error') failures.push(message.text())
    })
    // The key comes in the fragment (never sent to the server) and the page keeps it for the tab.
    await page.goto(`${worker.url}/playground#key=${CHAT_KEY}`)
    expect(new URL(page.url()).hash).toBe('')
    await ask(page, QUESTION)
    await page.waitForSelector('.turn[data-state="done"]', { timeout: 15_000 })
    const reference = await referenceAnswer(QUESTION)
    // Shown without the blank line the answer starts with.
    expect(await page.textContent('.turn .answer')).toBe(reference.content.trimStart())
    expect(await page.textContent('.turn .reasoning-text')).toBe(reference.reasoning)
    // The reasoning folds away once the answer starts; it stays one click away.
    expect(await page.getAttribute('.turn .reasoning', 'open')).toBeNull()
    expect(await page.textContent('#ttft')).toMatch(/^\d+ ms$/)
    expect(Number(await page.textContent('#ttft').then((t) => t?.replace(' ms', '')))).toBeGreaterThanOrEqual(150)
    expect(Number(await page.textContent('#tps'))).toBeGreaterThan(10)
    expect(await page.textContent('#tokens')).toBe('72')
    expect(await page.textContent('#state')).toBe('done (stop)')
    await page.click('.turn .reasoning summary')
    await page.screenshot({ path: join(ARTIFACTS, 'playground.png'), fullPage: true })
    expect(failures).toEqual([])
    await page.close()
  })

  it('cancels a session still being created when Stop is clicked, and never reads it', async () => {
    const page = await chromium.browser.newPage()
    // Hold the creation until Stop has been clicked, so the order is certain.
    let release: () => void = () => {}
    const stopped = new Promise<void>((resolve) => (release = resolve))
    await page.route('**/v1/streams', async (route) => {
      await stopped
      await route.continue()
    })
    const opened: string[] = []
    page.on('request', (request) => {
      if (request.url().includes('/events?')) opened.push(request.url())
    })
    await page.goto(`${worker.url}/playground#key=${CHAT_KEY}`)
    await ask(page, '[emulator ttft_ms=2000] A question nobody waits for')
    await page.click('#stop')
    expect(await page.textContent('#state')).toBe('stopped')
    const cancel = page.waitForRequest((request) => request.url().includes('/cancel?'))
    release()
    const answer = await (await cancel).response()
    expect(answer?.status()).toBe(200)
    expect(((await answer?.json()) as { cancelled: boolean }).cancelled).toBe(true)
    expect(opened).toEqual([])
    expect(await page.getAttribute('.turn', 'data-state')).toBe('stopped')
    await page.close()
  })

  it('shows the gateway error clearly when the key is wrong', async () => {
    const page = await chromium.browser.newPage()
    await page.goto(`${worker.url}/playground`)
    await page.fill('#api-key', `sk-${'x'.repeat(43)}`)
    await ask(page, 'Hello?')
    await page.waitForSelector('.turn[data-state="error"]', { timeout: 10_000 })
    // Served on 127.0.0.1 with loopback PUBLIC_ORIGINS, as npm start is: the message says where a local key comes from.
    const error = await page.textContent('.turn .turn-error')
    expect(error).toMatch(
      /^Incorrect API key provided\. Under 'npm start' the local key is DEV_API_KEY in \.dev\.vars .*\(HTTP 401, invalid_api_key\)$/,
    )
    expect(await page.isEnabled('#send')).toBe(true)
    await page.close()
  })
})
