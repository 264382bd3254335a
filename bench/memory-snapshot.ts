// node bench/memory-snapshot.ts: what each open gateway stream keeps in the isolate's heap.
// Serves the gateway (built unminified, so closures keep their names) with workerd's V8 inspector
// open, warms it up, takes a heap snapshot with no stream open, opens SNAPSHOT_STREAMS (default 500)
// streams as bench/memory.ts does (one event every 5 s each, read by the client), takes a second
// one, ends the streams, waits and takes a third. It groups every heap object by kind (closures by
// function and place in the bundle, plain objects by their property names, strings by their start,
// the closures' contexts by the closure that holds them, native and internal objects by name), and
// reports per open stream the change in count and in self size (bytes) of each group, largest
// first, with a sample retainer chain for the largest, and the bundle's source file for each place.
// Writes bench/results/memory-retention.md and the snapshots to dist/memory/ (for Chrome DevTools).
// Bounded: at most 2,000 streams, each step within a time limit.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT, freePort } from '../scripts/processes.ts'
import { buildWorker, serveWorker, spawnEmulator } from '../scripts/stack.ts'
import { connectIsolate, heapAfterGc, heapSnapshot, withExposedGc, type InspectorSession } from './memory-inspector.ts'
import { round } from './stats.ts'

const STREAMS = Number(process.env.SNAPSHOT_STREAMS ?? 500)
if (!(Number.isInteger(STREAMS) && STREAMS >= 10 && STREAMS <= 2_000)) throw new Error('SNAPSHOT_STREAMS must be 10 to 2000')
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const KEY = 'bench-backend-key'
const CLIENT_KEY = `sk-${'m'.repeat(43)}`
const LIMITS = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 100_000, maxOutputTokens: null }
const OUT_DIR = join(ROOT, 'dist/memory')
const TOP = 45

// --- the heap snapshot format (V8's .heapsnapshot) ---

interface RawSnapshot {
  snapshot: {
    meta: {
      node_fields: string[]
      node_types: [string[], ...unknown[]]
      edge_fields: string[]
      edge_types: [string[], ...unknown[]]
      location_fields?: string[]
    }
    node_count: number
  }
  nodes: number[]
  edges: number[]
  strings: string[]
  locations?: number[]
}

interface Heap {
  count: number
  type: (i: number) => string
  name: (i: number) => string
  id: (i: number) => number
  selfSize: (i: number) => number
  /** Outgoing edges of node i: [edge type, edge name, target node]. */
  edges: (i: number) => { type: string; name: string; to: number }[]
  /** Script id, line and column (0-based) of closure i, when the snapshot has them. */
  location: (i: number) => { script: number; line: number; column: number } | undefined
  /** The first strong retainer of node i (and the edge's name), if any. */
  retainer: (i: number) => { from: number; edge: string } | undefined
}

function parseHeap(text: string): Heap {
  const raw = JSON.parse(text) as RawSnapshot
  const { meta } = raw.snapshot
  const nf = meta.node_fields.length
  const ef = meta.edge_fields.length
  const nodeTypes = meta.node_types[0]
  const edgeTypes = meta.edge_types[0]
  const at = (field: string) => meta.node_fields.indexOf(field)
  const [TYPE, NAME, ID, SIZE, EDGES] = [at('type'), at('name'), at('id'), at('self_size'), at('edge_count')]
  const [ETYPE, ENAME, ETO] = ['type', 'name_or_index', 'to_node'].map((field) => meta.edge_fields.indexOf(field)) as [
    number,
    number,
    number,
  ]
  const count = raw.nodes.length / nf
  const firstEdge = new Uint32Array(count + 1)
  for (let i = 0; i < count; i++) firstEdge[i + 1] = (firstEdge[i] as number) + (raw.nodes[i * nf + EDGES] as number) * ef
  const edgeName = (e: number) => {
    const type = edgeTypes[raw.edges[e + ETYPE] as number] ?? ''
    const value = raw.edges[e + ENAME] as number
    return type === 'element' || type === 'hidden' ? String(value) : (raw.strings[value] ?? '')
  }
  const edges = (i: number) => {
    const list: { type: string; name: string; to: number }[] = []
    for (let e = firstEdge[i] as number; e < (firstEdge[i + 1] as number); e += ef)
      list.push({ type: edgeTypes[raw.edges[e + ETYPE] as number] ?? '', name: edgeName(e), to: (raw.edges[e + ETO] as number) / nf })
    return list
  }
  // First strong retainer of each node: weak edges and the synthetic roots' shortcuts are skipped.
  const retainerFrom = new Int32Array(count).fill(-1)
  const retainerEdge = new Int32Array(count).fill(-1)
  for (let i = 0; i < count; i++) {
    for (let e = firstEdge[i] as number; e < (firstEdge[i + 1] as number); e += ef) {
      const type = edgeTypes[raw.edges[e + ETYPE] as number]
      if (type === 'weak' || type === 'shortcut') continue
      const to = (raw.edges[e + ETO] as number) / nf
      if (retainerFrom[to] === -1) {
        retainerFrom[to] = i
        retainerEdge[to] = e
      }
    }
  }
  const locations = new Map<number, { script: number; line: number; column: number }>()
  const lf = meta.location_fields ?? []
  if (raw.locations && lf.length > 0) {
    const [OBJ, SCRIPT, LINE, COL] = ['object_index', 'script_id', 'line', 'column'].map((field) => lf.indexOf(field)) as [
      number,
      number,
      number,
      number,
    ]
    for (let l = 0; l < raw.locations.length; l += lf.length)
      locations.set((raw.locations[l + OBJ] as number) / nf, {
        script: raw.locations[l + SCRIPT] as number,
        line: raw.locations[l + LINE] as number,
        column: raw.locations[l + COL] as number,
      })
  }
  return {
    count,
    type: (i) => nodeTypes[raw.nodes[i * nf + TYPE] as number] ?? '',
    name: (i) => raw.strings[raw.nodes[i * nf + NAME] as number] ?? '',
    id: (i) => raw.nodes[i * nf + ID] as number,
    selfSize: (i) => raw.nodes[i * nf + SIZE] as number,
    edges,
    location: (i) => locations.get(i),
    retainer: (i) =>
      (retainerFrom[i] as number) < 0 ? undefined : { from: retainerFrom[i] as number, edge: edgeName(retainerEdge[i] as number) },
  }
}

// --- grouping ---

/** Where a place in the bundle comes from: the `// src/...` marker esbuild writes above each module. */
class BundleMap {
  private readonly lines: string[]
  private readonly markers: { line: number; file: string }[] = []
  private readonly bundleScripts: Set<number>
  constructor(bundle: string, bundleScripts: Set<number>) {
    this.bundleScripts = bundleScripts
    this.lines = bundle.split('\n')
    this.lines.forEach((text, line) => {
      const match = /^\/\/ ((?:src|bench|node_modules)\/\S+)$/.exec(text)
      if (match) this.markers.push({ line, file: match[1] as string })
    })
  }
  place(location: { script: number; line: number; column: number } | undefined): string {
    if (!location) return '?'
    if (!this.bundleScripts.has(location.script)) return `script ${location.script}:${location.line + 1}`
    let file = '?'
    for (const marker of this.markers) if (marker.line <= location.line) file = marker.file
    return `${file} (bundle:${location.line + 1})`
  }
  text(location: { script: number; line: number } | undefined): string {
    if (!location || !this.bundleScripts.has(location.script)) return ''
    return (this.lines[location.line] ?? '').trim().slice(0, 110)
  }
}

function groupKey(heap: Heap, i: number, contextOwner: Map<number, number>, places: BundleMap): string {
  const type = heap.type(i)
  const name = heap.name(i)
  if (type === 'closure') return `closure ${name || '(anonymous)'} @ ${places.place(heap.location(i))}`
  if (type === 'string' || type === 'concatenated string' || type === 'sliced string')
    return `${type} "${name.slice(0, 48).replace(/\s+/g, ' ').replace(/\|/g, '\\|')}${name.length > 48 ? '…' : ''}" (${name.length} chars)`
  if (type === 'object' && name === 'system / Context') {
    const owner = contextOwner.get(i)
    return owner === undefined
      ? 'context (no closure)'
      : `context of ${heap.name(owner) || '(anonymous)'} @ ${places.place(heap.location(owner))}`
  }
  if (type === 'object' && name === 'Object') {
    const properties = heap
      .edges(i)
      .filter((edge) => edge.type === 'property' && !edge.name.startsWith('__proto__'))
      .map((edge) => edge.name)
    return `Object {${properties.slice(0, 8).join(', ')}${properties.length > 8 ? ', …' : ''}}`
  }
  return `${type} ${name.slice(0, 80)}`
}

interface Group {
  count: number
  bytes: number
  /** A node of this group that is new in the snapshot (not in the earlier one), for a retainer chain. */
  sample?: number
}

function groups(heap: Heap, places: BundleMap, earlierIds?: Set<number>): Map<string, Group> {
  const contextOwner = new Map<number, number>()
  for (let i = 0; i < heap.count; i++)
    if (heap.type(i) === 'closure')
      for (const edge of heap.edges(i)) if (edge.name === 'context' && !contextOwner.has(edge.to)) contextOwner.set(edge.to, i)
  const result = new Map<string, Group>()
  for (let i = 0; i < heap.count; i++) {
    const key = groupKey(heap, i, contextOwner, places)
    const group = result.get(key) ?? { count: 0, bytes: 0 }
    group.count++
    group.bytes += heap.selfSize(i)
    if (group.sample === undefined && earlierIds && !earlierIds.has(heap.id(i))) group.sample = i
    result.set(key, group)
  }
  return result
}

function chain(heap: Heap, start: number, places: BundleMap): string {
  const parts: string[] = []
  let node = start
  const seen = new Set<number>()
  for (let depth = 0; depth < 9; depth++) {
    const up = heap.retainer(node)
    if (!up || seen.has(up.from)) break
    seen.add(up.from)
    const type = heap.type(up.from)
    const name = heap.name(up.from)
    const where = type === 'closure' ? ` @ ${places.place(heap.location(up.from))}` : ''
    parts.push(`.${up.edge} ← ${type === 'object' || type === 'closure' ? '' : `${type} `}${name.slice(0, 40) || '(anonymous)'}${where}`)
    node = up.from
    if (type === 'synthetic') break
  }
  return parts.join(' ')
}

/** A group of V8 heap objects (not one of workerd's native objects, which V8 lists with their tracker's sizes). */
const inV8Heap = (delta: Delta) => !delta.key.startsWith('native ') && !delta.key.startsWith('synthetic ')

interface Delta {
  key: string
  count: number
  bytes: number
  sample?: number
}

function diff(before: Map<string, Group>, after: Map<string, Group>): Delta[] {
  const keys = new Set([...before.keys(), ...after.keys()])
  return [...keys]
    .map((key) => ({
      key,
      count: (after.get(key)?.count ?? 0) - (before.get(key)?.count ?? 0),
      bytes: (after.get(key)?.bytes ?? 0) - (before.get(key)?.bytes ?? 0),
      ...(after.get(key)?.sample === undefined ? {} : { sample: after.get(key)?.sample as number }),
    }))
    .sort((a, b) => b.bytes - a.bytes)
}

// --- the run ---

interface HeldStream {
  ended: boolean
  abort: () => void
}

async function openStream(url: string): Promise<HeldStream> {
  const controller = new AbortController()
  const prompt = '[emulator ttft_ms=20 itl_ms=5000 reasoning_tokens=2000 content_tokens=16] Memory benchmark: what is 7 * 6?'
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
    body: JSON.stringify({ model: MODEL, stream: true, max_tokens: 3_000, messages: [{ role: 'user', content: prompt }] }),
    signal: controller.signal,
  })
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`)
  const reader = response.body.getReader()
  const held = { ended: false, abort: () => controller.abort() }
  let text = ''
  const decoder = new TextDecoder()
  while (!text.includes('data: ')) {
    const { done, value } = await reader.read()
    if (done) throw new Error('the stream ended before its first event')
    text += decoder.decode(value, { stream: true })
  }
  void (async () => {
    try {
      for (;;) if ((await reader.read()).done) break
    } catch {
      // aborted
    } finally {
      held.ended = true
    }
  })()
  return held
}

async function openMany(url: string, count: number, deadline: number): Promise<HeldStream[]> {
  const held: HeldStream[] = []
  let started = 0
  const worker = async () => {
    while (started < count && Date.now() < deadline) {
      started++
      held.push(await openStream(url))
    }
  }
  await Promise.all(Array.from({ length: 50 }, worker))
  return held
}

async function snapshot(session: InspectorSession, name: string): Promise<Heap> {
  const text = await heapSnapshot(session)
  writeFileSync(join(OUT_DIR, `${name}.heapsnapshot`), text)
  return parseHeap(text)
}

async function bundleScriptIds(session: InspectorSession, bundleName: string): Promise<Set<number>> {
  const ids = new Set<number>()
  const stop = session.on('Debugger.scriptParsed', (params) => {
    if (String(params.url).endsWith(bundleName)) ids.add(Number(params.scriptId))
  })
  await session.send('Debugger.enable')
  await sleep(500)
  await session.send('Debugger.disable')
  stop()
  return ids
}

function table(title: string, deltas: Delta[], perStreams: number, heap: Heap, places: BundleMap, withChains: number): string[] {
  const lines = [
    '',
    `### ${title}`,
    '',
    '| # | group (kind, name, place) | objects per stream | bytes per stream | total bytes |',
    '|---|---|---|---|---|',
  ]
  deltas.slice(0, TOP).forEach((delta, index) => {
    lines.push(
      `| ${index + 1} | ${delta.key} | ${round(delta.count / perStreams, 2)} | ${Math.round(delta.bytes / perStreams)} | ${delta.bytes} |`,
    )
  })
  lines.push('', 'Sample retainer chains (a new object of the group, then who holds it, upwards):', '')
  for (const delta of deltas.slice(0, withChains)) {
    if (delta.sample === undefined) continue
    const text = heap.type(delta.sample) === 'closure' ? ` — \`${places.text(heap.location(delta.sample))}\`` : ''
    lines.push(`- **${delta.key}**${text}: ${chain(heap, delta.sample, places)}`)
  }
  return lines
}

async function main(): Promise<void> {
  mkdirSync(OUT_DIR, { recursive: true })
  // Unminified, into a directory of its own: closures keep their names, and dist/index.js stays as built.
  const script = await buildWorker({ script: 'src/index.ts', outdir: 'memory-readable' }, { readableNames: true })
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
  const vars = { BACKEND_URLS: emulator.url, BACKEND_API_KEY: KEY, BACKEND_MAX_CONCURRENCY: '100000' }
  const gateway = await withExposedGc(() =>
    serveWorker(script, vars, { keys: [{ secret: CLIENT_KEY, fields: { limits: LIMITS } }], inspectorPort }),
  )
  let held: HeldStream[] = []
  try {
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
        body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'Warm-up: what is 7 * 6?' }] }),
      })
      await response.text()
    }
    for (const stream of await openMany(gateway.url, 8, Date.now() + 30_000)) stream.abort()
    await sleep(7_000)
    const session = await connectIsolate(inspectorPort)
    const before = await snapshot(session, 'gateway-0')
    const usedBefore = (await heapAfterGc(session)).usedSize
    held = await openMany(gateway.url, STREAMS, Date.now() + 120_000)
    await sleep(1_500)
    const usedDuring = (await heapAfterGc(session)).usedSize
    const during = await snapshot(session, `gateway-${STREAMS}`)
    const alive = held.filter((stream) => !stream.ended).length
    for (const stream of held) stream.abort()
    await sleep(12_000) // every aborted stream's next event (5 s apart) finds its client gone; then settling
    const usedAfter = (await heapAfterGc(session)).usedSize
    const after = await snapshot(session, 'gateway-after')
    const bundleName = script.split('/').at(-1) as string
    const places = new BundleMap(readFileSync(script, 'utf8'), await bundleScriptIds(session, bundleName))
    session.close()
    const beforeIds = new Set<number>()
    for (let i = 0; i < before.count; i++) beforeIds.add(before.id(i))
    const duringIds = new Set<number>()
    for (let i = 0; i < during.count; i++) duringIds.add(during.id(i))
    const groupsBefore = groups(before, places)
    const groupsDuring = groups(during, places, beforeIds)
    const groupsAfter = groups(after, places, beforeIds)
    const open = diff(groupsBefore, groupsDuring)
    const left = diff(groupsBefore, groupsAfter)
    const total = (deltas: Delta[]) => deltas.reduce((sum, delta) => sum + delta.bytes, 0)
    const lines = [
      '# What each open gateway stream keeps in the heap',
      '',
      `${new Date().toISOString()}. \`node bench/memory-snapshot.ts\`: the gateway (working tree, unminified), heap snapshots through`,
      `workerd's V8 inspector with no stream open, with ${alive} of ${STREAMS} streams open (one event every 5 s each, read by the client),`,
      'and 12 s after those streams were ended. Objects grouped by kind: closures by function and place in the bundle (the',
      '`// src/...` module above it), their contexts by the closure holding them, plain objects by their first 8 properties, strings by',
      'their start, others by V8 type and name. Self sizes (bytes), so a group is what it holds itself, not what it keeps alive.',
      '',
      `Heap used after forced GC: ${round(usedBefore / 1e6)} MB with none open, ${round(usedDuring / 1e6)} MB with ${alive} open`,
      `(${Math.round((usedDuring - usedBefore) / alive)} bytes per stream), ${round(usedAfter / 1e6)} MB after they ended.`,
      `Snapshot totals (self sizes): +${Math.round(total(open) / alive)} bytes per open stream; ${total(left)} bytes more after than before.`,
      '',
      "V8 reports workerd's own objects (type native: Request, Headers, AbortSignal, stream controllers...) with the sizes workerd's",
      'memory tracker gives them; they live outside the V8 heap (not in Runtime.getHeapUsage usedSize) but in the process. Below, the',
      'groups of the V8 heap apart from them, then all groups together.',
      ...table(`V8 heap objects per open stream (${alive} open vs none)`, open.filter(inV8Heap), alive, during, places, 25),
      ...table(`All groups, workerd's native objects included, per open stream (${alive} open vs none)`, open, alive, during, places, 12),
      ...table(`Left after the streams ended (vs before, divided by ${alive})`, left, alive, after, places, 10),
    ]
    writeFileSync(join(ROOT, 'bench/results/memory-retention.md'), `${lines.join('\n')}\n`)
    console.log(lines.join('\n'))
  } finally {
    for (const stream of held) stream.abort()
    await gateway.dispose()
    await emulator.stop()
  }
}

await main()
