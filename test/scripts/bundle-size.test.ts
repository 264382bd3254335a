// The Worker built exactly as a deploy builds it (wrangler deploy --dry-run) stays under the
// gzip budget: smaller than the 122 kB a peer gateway advertises.
import { describe, expect, it } from 'vitest'
import { GZIP_BUDGET_BYTES, measureBundle } from '../../scripts/bundle-size.ts'

describe('npm run bundle-size', () => {
  it('measures the deploy build and finds its gzip size under 122 kB', { timeout: 120_000 }, async () => {
    const size = await measureBundle()
    expect(GZIP_BUDGET_BYTES).toBe(122_000)
    expect(size.files.map((file) => file.name)).toEqual(['index.js'])
    expect(size.bytes).toBeGreaterThan(size.gzipBytes)
    expect(size.gzipBytes).toBeGreaterThan(0)
    // wrangler's own figure for the same upload, which its dry run prints.
    expect(size.wranglerSummary).toMatch(/^Total Upload: [\d.]+ KiB \/ gzip: [\d.]+ KiB$/)
    expect(size.gzipBytes).toBeLessThan(GZIP_BUDGET_BYTES)
  })
})
