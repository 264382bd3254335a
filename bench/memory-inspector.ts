// The memory benchmarks' view into a workerd isolate and process: workerd's V8 inspector (Chrome
// DevTools protocol over a WebSocket, opened with serveWorker's inspectorPort) for the isolate's
// JavaScript heap, after forced full GCs, and /proc for the process's resident memory.
// workerd never answers HeapProfiler.collectGarbage (V8 runs it as a foreground task, which
// workerd's platform does not pump: the call hangs), so workerd is started with V8's --expose-gc
// (Miniflare passes MINIFLARE_WORKERD_V8_FLAGS on) and gc() is evaluated in the Worker's context.
// Runtime is enabled only long enough to learn that context's id: while enabled, the inspector
// keeps every console.log argument, which is memory the isolate would not otherwise hold.
import { readFileSync } from 'node:fs'

interface Message {
  id?: number
  method?: string
  params?: Record<string, unknown>
  result?: unknown
  error?: { message: string }
}

/** Set while the workerd processes to measure are started: gc() in their isolates. */
export const EXPOSE_GC_ENV = { MINIFLARE_WORKERD_V8_FLAGS: '--expose-gc' }

/** Runs `start` with process.env.MINIFLARE_WORKERD_V8_FLAGS set to --expose-gc (Miniflare reads it when it starts workerd). */
export async function withExposedGc<T>(start: () => Promise<T>): Promise<T> {
  const before = process.env.MINIFLARE_WORKERD_V8_FLAGS
  process.env.MINIFLARE_WORKERD_V8_FLAGS = EXPOSE_GC_ENV.MINIFLARE_WORKERD_V8_FLAGS
  try {
    return await start()
  } finally {
    if (before === undefined) delete process.env.MINIFLARE_WORKERD_V8_FLAGS
    else process.env.MINIFLARE_WORKERD_V8_FLAGS = before
  }
}

export interface InspectorSession {
  send<T>(method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<T>
  /** Calls `listener` for every event named `method`; returns what stops it. */
  on(method: string, listener: (params: Record<string, unknown>) => void): () => void
  close(): void
  /** The id of the Worker's JavaScript context (for Runtime.evaluate). */
  contextId: number
}

/**
 * The isolate serving the Worker: Miniflare names the user's Worker `core:user:<name>` (its other
 * targets, such as core:entry and the KV and cache services, are its own).
 */
export async function connectIsolate(inspectorPort: number): Promise<InspectorSession> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as { id: string; webSocketDebuggerUrl: string }[]
  const target = targets.find((candidate) => candidate.id.startsWith('core:user:'))
  if (!target) throw new Error(`the inspector on port ${inspectorPort} lists no core:user: isolate`)
  const session = await connect(target.webSocketDebuggerUrl)
  const contexts: number[] = []
  const stop = session.on('Runtime.executionContextCreated', (params) => contexts.push(Number((params.context as { id: number }).id)))
  await session.send('Runtime.enable')
  await session.send('Runtime.disable')
  stop()
  if (contexts[0] === undefined) throw new Error('the inspector reported no execution context for the Worker')
  session.contextId = contexts[0]
  return session
}

async function connect(url: string): Promise<InspectorSession> {
  // The context id is filled in by connectIsolate.
  const socket = new WebSocket(url)
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve(), { once: true })
    socket.addEventListener('error', () => reject(new Error(`cannot open the inspector at ${url}`)), { once: true })
  })
  let nextId = 1
  const waiting = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>()
  const listeners = new Map<string, ((params: Record<string, unknown>) => void)[]>()
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as Message
    if (message.id !== undefined) {
      const pending = waiting.get(message.id)
      waiting.delete(message.id)
      if (message.error) pending?.reject(new Error(`inspector: ${message.error.message}`))
      else pending?.resolve(message.result)
    } else if (message.method) {
      for (const listener of listeners.get(message.method) ?? []) listener(message.params ?? {})
    }
  })
  socket.addEventListener('close', () => {
    for (const pending of waiting.values()) pending.reject(new Error('inspector session closed'))
    waiting.clear()
  })
  return {
    send<T>(method: string, params: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<T> {
      const id = nextId++
      socket.send(JSON.stringify({ id, method, params }))
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id)
          reject(new Error(`inspector: ${method} took over ${timeoutMs} ms`))
        }, timeoutMs)
        waiting.set(id, {
          resolve: (result) => {
            clearTimeout(timer)
            resolve(result as T)
          },
          reject: (error) => {
            clearTimeout(timer)
            reject(error)
          },
        })
      })
    },
    on(method, listener) {
      listeners.set(method, [...(listeners.get(method) ?? []), listener])
      return () =>
        listeners.set(
          method,
          (listeners.get(method) ?? []).filter((other) => other !== listener),
        )
    },
    close: () => socket.close(),
    contextId: 0,
  }
}

/** What Runtime.getHeapUsage reports, in bytes (the last two only from newer V8 releases). */
export interface HeapUsage {
  usedSize: number
  totalSize: number
  embedderHeapUsedSize?: number
  backingStorageSize?: number
}

/** Full collections in the isolate (needs --expose-gc, see withExposedGc). */
export async function collectGarbage(session: InspectorSession): Promise<void> {
  const answer = await session.send<{ exceptionDetails?: { text: string } }>('Runtime.evaluate', {
    expression: 'gc(); gc(); 0',
    contextId: session.contextId,
    silent: true,
  })
  if (answer.exceptionDetails) throw new Error(`gc() failed in the isolate: ${answer.exceptionDetails.text} (started without --expose-gc?)`)
}

/**
 * The isolate's heap after full collections: two, since a first one can leave garbage that only
 * became unreachable during it (finalizers, weak callbacks) for the next.
 */
export async function heapAfterGc(session: InspectorSession): Promise<HeapUsage> {
  await collectGarbage(session)
  return session.send<HeapUsage>('Runtime.getHeapUsage')
}

/** A heap snapshot (V8's .heapsnapshot JSON, as Chrome DevTools saves it), taken after full GCs. */
export async function heapSnapshot(session: InspectorSession): Promise<string> {
  const chunks: string[] = []
  const stop = session.on('HeapProfiler.addHeapSnapshotChunk', (params) => chunks.push(String(params.chunk)))
  try {
    await collectGarbage(session)
    await session.send('HeapProfiler.enable')
    await session.send('HeapProfiler.takeHeapSnapshot', { reportProgress: false, captureNumericValue: false }, 600_000)
    await session.send('HeapProfiler.disable')
  } finally {
    stop()
  }
  return chunks.join('')
}

/** The resident set size of a process (VmRSS of /proc/<pid>/status), in bytes. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  if (!match) throw new Error(`no VmRSS for process ${pid}`)
  return Number(match[1]) * 1024
}

/** The soft limit on open files of this process (children inherit it). */
export function openFilesLimit(): number {
  const limits = readFileSync('/proc/self/limits', 'utf8')
  const match = /^Max open files\s+(\d+|unlimited)\s+/m.exec(limits)
  return !match || match[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match[1])
}
