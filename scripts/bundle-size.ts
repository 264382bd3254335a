// npm run bundle-size: builds the Worker exactly as a deploy would (`wrangler deploy --dry-run`,
// into a temporary directory so dist/ is left alone) and prints the size of what would be
// uploaded, raw and gzipped. Exits 1 when the gzip size is not under GZIP_BUDGET_BYTES: a peer
// gateway advertises 122 kB, and this Worker is meant to stay smaller.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { startWrangler } from './processes.ts'

export const GZIP_BUDGET_BYTES = 122_000

/**
 * What wrangler uploads: the bundle and the modules beside it (the pages, as text modules), not
 * the source map or the README it writes there.
 */
const NOT_UPLOADED = (name: string): boolean => extname(name) === '.map' || name === 'README.md'

export interface BundleSize {
  files: { name: string; bytes: number; gzipBytes: number }[]
  bytes: number
  gzipBytes: number
  /** wrangler's own "Total Upload: ... / gzip: ..." line, for comparison. */
  wranglerSummary: string | null
}

export async function measureBundle(): Promise<BundleSize> {
  const outdir = await mkdtemp(join(tmpdir(), 'bundle-size-'))
  try {
    const output = await dryRunDeploy(outdir)
    const names = (await readdir(outdir)).filter((name) => !NOT_UPLOADED(name)).sort()
    if (names.length === 0) throw new Error(`wrangler deploy --dry-run wrote no module to ${outdir}:\n${output}`)
    const files = await Promise.all(
      names.map(async (name) => {
        const content = await readFile(join(outdir, name))
        return { name, bytes: content.length, gzipBytes: gzipSync(content).length }
      }),
    )
    return {
      files,
      bytes: files.reduce((sum, file) => sum + file.bytes, 0),
      gzipBytes: files.reduce((sum, file) => sum + file.gzipBytes, 0),
      wranglerSummary: /^Total Upload: .*$/m.exec(output)?.[0] ?? null,
    }
  } finally {
    await rm(outdir, { recursive: true, force: true })
  }
}

/** Runs the deploy's build without deploying; resolves with its output, rejects when it fails. */
async function dryRunDeploy(outdir: string): Promise<string> {
  const wrangler = startWrangler(['deploy', '--dry-run', '--outdir', outdir])
  const chunks: Buffer[] = []
  wrangler.process.stdout?.on('data', (chunk: Buffer) => chunks.push(chunk))
  wrangler.process.stderr?.on('data', (chunk: Buffer) => chunks.push(chunk))
  const code = await new Promise<number | null>((resolve) => wrangler.process.once('exit', resolve))
  const output = Buffer.concat(chunks).toString('utf8')
  if (code !== 0) throw new Error(`wrangler deploy --dry-run exited ${code}:\n${output}`)
  return output
}

function kilobytes(bytes: number): string {
  return `${(bytes / 1000).toFixed(1)} kB`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const size = await measureBundle()
  for (const file of size.files) console.log(`${file.name}  ${file.bytes} bytes, gzip ${file.gzipBytes} bytes`)
  console.log(
    `Worker bundle: ${kilobytes(size.bytes)} raw, ${kilobytes(size.gzipBytes)} gzip (budget: under ${kilobytes(GZIP_BUDGET_BYTES)} gzip)`,
  )
  if (size.wranglerSummary) console.log(`wrangler: ${size.wranglerSummary}`)
  if (size.gzipBytes >= GZIP_BUDGET_BYTES) {
    console.error(`The gzipped bundle is ${size.gzipBytes} bytes, over the ${GZIP_BUDGET_BYTES}-byte budget.`)
    process.exitCode = 1
  }
}
