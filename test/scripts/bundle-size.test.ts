// The Worker built exactly as a deploy builds it (wrangler deploy --dry-run) stays under the
// gzip budget: smaller than the 122 kB a peer gateway advertises.
import { describe, expect, it } from 'vitest'
import { GZIP_BUDGET_BYTES, measureBundle } from '../../scripts/bundle-size.ts'

describe('npm run bundle-size', () => {
  it('measures the deploy build and finds its gzip size under 122 kB', { timeout: 120_000 }, async () => {
    const size = await measureBundle()
    expect(GZIP_BUDGET_BYTES).toBe(122_000)
    // The bundle and the pages it imports as text modules (wrangler names them by content hash).
    const names = size.files.map((file) => file.name.replace(/^[0-9a-f]{40}-/, '')).sort()
    expect(names).toEqual([
      'dashboard.browser.js',
      'dashboard.css',
      'dashboard.html',
      'index.js',
      'login.html',
      'playground.browser.js',
      'playground.css',
      'playground.html',
    ])
    expect(size.bytes).toBeGreaterThan(size.gzipBytes)
    expect(size.gzipBytes).toBeGreaterThan(0)
    // wrangler's own figure for the same upload, which its dry run prints.
    expect(size.wranglerSummary).toMatch(/^Total Upload: [\d.]+ KiB \/ gzip: [\d.]+ KiB$/)
    expect(size.gzipBytes).toBeLessThan(GZIP_BUDGET_BYTES)
  })
})
