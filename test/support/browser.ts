// Real headless Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright-core
// (nothing downloads a browser). CI installs the package (.ci/run); elsewhere, without it, the
// browser tests fail with the reason rather than pass.
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { ROOT } from '../../scripts/processes.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** Where tests keep what a person may want to look at afterwards (screenshots). */
export const ARTIFACTS = join(ROOT, 'test-results', 'artifacts')

export interface RunningBrowser {
  browser: Browser
  close(): Promise<void>
}

export async function launchChromium(): Promise<RunningBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (as .ci/run does)`)
  mkdirSync(ARTIFACTS, { recursive: true })
  // playwright gives each launch a fresh, empty profile. The flags keep Chromium off the network (this machine refuses it) and quiet at start.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  })
  return {
    browser,
    close: () => browser.close(),
  }
}
