// node bench/memory-variants.ts (issue 32): where the relay's native memory per open stream goes.
// Measures, with the memory part's machinery (bench/memory.ts: a fresh workerd per target and
// round, 1,000 streams held open, one event every 5 s), the JS floor (bench/passthrough-js-worker.js)
// beside the Workers of bench/memory-variants/, each the floor plus ONE mechanism of the gateway's
// relay (see each file), and the gateway's bare relay and the gateway themselves. Each variant is
// bundled with esbuild into dist/memory-variants/ (they import eventsource-parser and _parts.js).
//   BENCH_VARIANTS      a comma list of bench/memory-variants/*.js names (default: every one)
//   BENCH_VARIANTS_GATEWAY=off  leaves out gateway-bare and gateway
//   BENCH_MEMORY_ROUNDS (default 3), BENCH_MEMORY_STEPS (default 1000), BENCH_MEMORY_HOLD_MS (default 0)
//   BENCH_OUT           bench/results/<BENCH_OUT>.json and .md (default variants-memory)
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { buildWorker, spawnEmulator } from '../scripts/stack.ts'
import { measureMemory, memorySteps, type MemoryTarget } from './memory.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const KEY = 'bench-backend-key'
const CLIENT_KEY = `sk-${'b'.repeat(43)}`
const MAX_MODEL_LEN = 32_768
const DIR = join(ROOT, 'bench/memory-variants')
const OUT = process.env.BENCH_OUT ?? 'variants-memory'
if (!/^[\w.-]+$/.test(OUT)) throw new Error(`BENCH_OUT must be a plain file name, got ${OUT}`)
const ROUNDS = Number(process.env.BENCH_MEMORY_ROUNDS ?? 3)
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1 && ROUNDS <= 20)) throw new Error('BENCH_MEMORY_ROUNDS must be 1 to 20')

/** Every variant: the .js files of bench/memory-variants/ but the shared ones (named _*). */
const ALL = readdirSync(DIR)
  .filter((file) => file.endsWith('.js') && !file.startsWith('_'))
  .map((file) => file.slice(0, -3))
const chosen = process.env.BENCH_VARIANTS ? process.env.BENCH_VARIANTS.split(',').filter(Boolean) : ALL
const unknown = chosen.filter((name) => !ALL.includes(name))
if (unknown.length > 0) throw new Error(`BENCH_VARIANTS names no file of bench/memory-variants/: ${unknown.join(', ')}`)

/** Bundles one variant (ES module, as wrangler would) and returns the bundle's path. */
function bundle(name: string): string {
  const out = join(ROOT, 'dist/memory-variants', `${name}.js`)
  execFileSync(
    join(ROOT, 'node_modules/.bin/esbuild'),
    [join(DIR, `${name}.js`), '--bundle', '--format=esm', '--log-level=warning', `--outfile=${out}`],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  )
  return out
}

async function main(): Promise<void> {
  mkdirSync(join(ROOT, 'dist/memory-variants'), { recursive: true })
  const bundles = chosen.map((name) => ({ name, script: bundle(name) }))
  const gateways = process.env.BENCH_VARIANTS_GATEWAY !== 'off'
  // Their own output directories: dist/ itself is the default build's, which others may be writing.
  const gateway = gateways ? await buildWorker({ script: 'src/index.ts', outdir: 'memory-variants/gateway' }) : ''
  const bare = gateways ? await buildWorker({ script: 'bench/bare-worker.ts', outdir: 'memory-variants/bare' }) : ''
  const emulator = await spawnEmulator([
    ...['--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1', '--api-key', KEY],
    ...['--max-model-len', String(MAX_MODEL_LEN), '--ttft-ms', '20', '--itl-ms', '5'],
  ])
  try {
    const plain = (name: MemoryTarget['name'], script: string): MemoryTarget => ({
      name,
      script,
      vars: { UPSTREAM: emulator.url },
      options: { limiter: false },
      key: KEY,
    })
    // As bench/run.ts's memory targets: one backend that takes every stream, roomy limits.
    const backend = {
      BACKEND_URLS: emulator.url,
      BACKEND_API_KEY: KEY,
      MAX_MODEL_LEN: String(MAX_MODEL_LEN),
      BACKEND_MAX_CONCURRENCY: '100000',
    }
    const limits = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 100_000, maxOutputTokens: null }
    const targets: MemoryTarget[] = [
      plain('passthrough-js', join(ROOT, 'bench/passthrough-js-worker.js')),
      ...bundles.map(({ name, script }) => plain(`variant-${name}`, script)),
      ...(gateways
        ? [
            { name: 'gateway-bare' as const, script: bare, vars: backend, options: {}, key: KEY },
            {
              name: 'gateway' as const,
              script: gateway,
              vars: backend,
              options: { keys: [{ secret: CLIENT_KEY, fields: { limits } }] },
              key: CLIENT_KEY,
            },
          ]
        : []),
    ]
    const settings = {
      model: MODEL,
      promptChars: 0,
      holdMs: Number(process.env.BENCH_MEMORY_HOLD_MS ?? 0),
      upstream: { url: emulator.url },
      rounds: ROUNDS,
      steps: memorySteps(process.env.BENCH_MEMORY_STEPS ?? '1000'),
    }
    await measureMemory(targets, settings, OUT)
  } finally {
    await emulator.stop()
  }
}

await main()
