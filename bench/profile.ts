// npm run bench:profile: where the gateway's CPU goes on the c=1 path. Serves the built gateway
// with workerd's V8 inspector open, takes a CPU profile (Chrome DevTools protocol) over a bounded
// number of sequential streamed requests against one emulator, and prints the functions with the
// most self time and the most inclusive time, per request. The profile itself is written to
// dist/gateway.cpuprofile (open it in Chrome DevTools' Performance panel).
// Sampling costs the isolate some time, so compare runs of this script, never its times with npm run bench.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, freePort } from '../scripts/processes.ts'
import { buildWorker, serveWorker, spawnEmulator } from '../scripts/stack.ts'
import { runPool, timeStream } from './client.ts'
import { percentile, round } from './stats.ts'

const REQUESTS = Number(process.env.PROFILE_REQUESTS ?? 200)
if (!(REQUESTS >= 1 && REQUESTS <= 2_000)) throw new Error('PROFILE_REQUESTS must be 1 to 2000')
/** Extra settings for the served gateway, as NAME=value pairs separated by commas (PROFILE_VARS=RATE_LIMITS=off). */
const VARS = Object.fromEntries(
  (process.env.PROFILE_VARS ?? '')
    .split(',')
    .filter(Boolean)
    .map((pair) => {
      const at = pair.indexOf('=')
      if (at < 1) throw new Error(`PROFILE_VARS takes NAME=value pairs separated by commas, got ${pair}`)
      return [pair.slice(0, at), pair.slice(at + 1)]
    }),
)
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const KEY = 'bench-backend-key'
const CLIENT_KEY = `sk-${'p'.repeat(43)}`
const ROOMY_LIMITS = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 1_000, maxOutputTokens: null }
const SAMPLING_US = 100

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

/** One Chrome DevTools protocol session over the inspector's WebSocket. */
async function connect(url: string) {
  const socket = new WebSocket(url)
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve(), { once: true })
    socket.addEventListener('error', () => reject(new Error(`cannot open the inspector at ${url}`)), { once: true })
  })
  let nextId = 1
  const waiting = new Map<number, (result: unknown) => void>()
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown }
    if (message.id !== undefined) waiting.get(message.id)?.(message.result)
  })
  return {
    send<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
      const id = nextId++
      socket.send(JSON.stringify({ id, method, params }))
      return new Promise<T>((resolve) => waiting.set(id, (result) => resolve(result as T)))
    },
    close: () => socket.close(),
  }
}

function label(frame: CallFrame): string {
  const file = frame.url.split('/').at(-1) ?? ''
  return `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`
}

/** Self and inclusive sample time (µs) per function label. */
function tally(profile: CpuProfile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  // Counted in samples, not time deltas: workerd does not mark its isolate idle, so a gap while
  // it waited on I/O shows as one long delta charged to whatever sample ends it.
  profile.samples.forEach((id) => {
    const delta = SAMPLING_US
    const node = byId.get(id)
    if (!node) return
    const own = label(node.callFrame)
    self.set(own, (self.get(own) ?? 0) + delta)
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = label((byId.get(at) as ProfileNode).callFrame)
      if (seen.has(name)) continue
      seen.add(name)
      inclusive.set(name, (inclusive.get(name) ?? 0) + delta)
    }
  })
  return { self, inclusive }
}

function top(times: Map<string, number>, count: number): string[] {
  return [...times]
    .filter(([name]) => !name.startsWith('(idle)') && !name.startsWith('(root)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => `${String(round(us / REQUESTS)).padStart(8)} µs  ${name}`)
}

async function main(): Promise<void> {
  // Unminified: the profile names the gateway's own functions.
  const script = await buildWorker(undefined, { readableNames: true })
  const emulator = await spawnEmulator([
    '--served-model-name',
    MODEL,
    '--reasoning-parser',
    'deepseek_r1',
    '--api-key',
    KEY,
    '--ttft-ms',
    '20',
    '--itl-ms',
    '5',
  ])
  const inspectorPort = await freePort()
  const keys = [{ secret: CLIENT_KEY, fields: { limits: ROOMY_LIMITS } }]
  const gateway = await serveWorker(script, { BACKEND_URLS: emulator.url, BACKEND_API_KEY: KEY, ...VARS }, { keys, inspectorPort })
  try {
    const send = () =>
      timeStream(
        `${gateway.url}/v1/chat/completions`,
        { model: MODEL, stream: true, messages: [{ role: 'user', content: 'Benchmark prompt: what is 7 * 6?' }] },
        { authorization: `Bearer ${CLIENT_KEY}` },
      )
    await runPool(20, 1, send) // warm-up: compiled code and warm caches, as a busy isolate has
    const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as {
      title: string
      webSocketDebuggerUrl: string
    }[]
    const target = targets.find((candidate) => !candidate.title.startsWith('core:')) ?? targets[0]
    if (!target) throw new Error('the inspector lists no isolate')
    const session = await connect(target.webSocketDebuggerUrl)
    await session.send('Profiler.enable')
    await session.send('Profiler.setSamplingInterval', { interval: SAMPLING_US })
    await session.send('Profiler.start')
    const samples = await runPool(REQUESTS, 1, send)
    const { profile } = await session.send<{ profile: CpuProfile }>('Profiler.stop')
    session.close()
    writeFileSync(join(ROOT, 'dist/gateway.cpuprofile'), JSON.stringify(profile))
    const { self, inclusive } = tally(profile)
    const busy = [...self].filter(([name]) => !name.startsWith('(idle)')).reduce((sum, [, us]) => sum + us, 0)
    const ttfe = samples.map((sample) => (sample.arrivals[0] ?? Number.NaN) - sample.sentAt)
    console.log(`isolate ${target.title}: ${REQUESTS} requests, TTFE p50 ${round(percentile(ttfe, 50))} ms (profiler on)`)
    console.log(`isolate busy per request (JavaScript, GC, native calls): ${round(busy / REQUESTS)} µs (sampled every ${SAMPLING_US} µs)`)
    console.log('\nself time per request:')
    console.log(top(self, 30).join('\n'))
    console.log('\ninclusive time per request:')
    console.log(top(inclusive, 40).join('\n'))
  } finally {
    await gateway.dispose()
    await emulator.stop()
  }
}

await main()
