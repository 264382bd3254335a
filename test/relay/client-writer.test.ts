import { describe, expect, it } from 'vitest'
import { ClientSseWriter, type ClientWriterOptions } from '../../src/relay/client-writer.ts'
import { readAll } from '../support/sse.ts'

const decoder = new TextDecoder()

/** A writer with a keep-alive far off, unless the test says otherwise; `gone` counts onGone calls. */
function writer(options: Partial<ClientWriterOptions> = {}) {
  const gone = { calls: 0 }
  const out = new ClientSseWriter({
    keepAliveMs: 60_000,
    slowClient: 'wait',
    maxUntaken: 8,
    onGone: () => gone.calls++,
    ...options,
  })
  return { out, gone }
}

/** Lets the runtime settle the stream's promises (reads, pulls) queued so far. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 0))

async function readChunk(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const { value } = await reader.read()
  return decoder.decode(value)
}

describe('ClientSseWriter', () => {
  it('sends every write in order, each as its own chunk, and ends once they are all read', async () => {
    const { out, gone } = writer()
    out.write('data: 1\n\n')
    out.write('data: 2\n\n')
    out.close()
    out.write('data: too late\n\n')
    expect(await readAll(out.body)).toBe('data: 1\n\ndata: 2\n\n')
    expect(out.open).toBe(false)
    expect(gone.calls).toBe(0)
  })

  it('runs onTaken only once the reader has taken the write, not when it is written', async () => {
    const { out } = writer()
    const taken: string[] = []
    out.write('a', () => taken.push('a'))
    out.write('b', () => taken.push('b'))
    await turn()
    expect(taken).toEqual([])
    const reader = out.body.getReader()
    expect(await readChunk(reader)).toBe('a')
    await turn()
    expect(taken).toEqual(['a'])
    expect(await readChunk(reader)).toBe('b')
    await turn()
    expect(taken).toEqual(['a', 'b'])
    out.close()
    expect((await reader.read()).done).toBe(true)
  })

  it("runs the last writes' onTaken before the stream ends", async () => {
    const { out } = writer()
    const taken: string[] = []
    out.write('last', () => taken.push('last'))
    out.close()
    expect(await readAll(out.body)).toBe('last')
    expect(taken).toEqual(['last'])
  })

  it('holds the producer back while the reader lags by more than maxUntaken writes, and lets it go once the reader catches up', async () => {
    const { out } = writer({ maxUntaken: 2 })
    out.write('1')
    out.write('2')
    expect(out.backpressure()).toBeUndefined()
    out.write('3')
    const wait = out.backpressure()
    expect(wait).toBeInstanceOf(Promise)
    let released = false
    void wait?.then(() => (released = true))
    const reader = out.body.getReader()
    for (const expected of ['1', '2']) expect(await readChunk(reader)).toBe(expected)
    await turn()
    expect(released).toBe(false)
    expect(await readChunk(reader)).toBe('3')
    await turn()
    expect(released).toBe(true)
  })

  it('never leaves a producer waiting on a writer that was cut off', async () => {
    const { out } = writer({ maxUntaken: 0 })
    out.write('unread')
    const wait = out.backpressure()
    out.abort(new Error('stopped'))
    await expect(wait).resolves.toBeUndefined()
    expect(out.backpressure()).toBeUndefined()
  })

  it('tells onGone once, at the first write after the client cancelled the body, and ignores writes after it', async () => {
    const { out, gone } = writer()
    const reader = out.body.getReader()
    out.write('first')
    expect(await readChunk(reader)).toBe('first')
    await reader.cancel('client left')
    // As in workerd's HTTP layer: nothing tells the writer until it writes (hence the probe).
    await turn()
    expect(gone.calls).toBe(0)
    out.write('noticed here')
    await turn()
    expect(gone.calls).toBe(1)
    expect(out.open).toBe(false)
    out.write('after')
    out.close()
    await turn()
    expect(gone.calls).toBe(1)
  })

  it('cuts a client that leaves maxUntaken writes untaken under the drop policy, and tells onGone once', async () => {
    const { out, gone } = writer({ slowClient: 'drop', maxUntaken: 3 })
    for (const text of ['1', '2', '3', '4', '5']) out.write(text)
    expect(gone.calls).toBe(1)
    expect(out.open).toBe(false)
    await expect(out.body.getReader().read()).rejects.toThrow('too slow')
  })

  it('cuts the stream once a write was taken when told to in its onTaken: the reader gets the bytes, then an error', async () => {
    const { out } = writer()
    const reader = out.body.getReader()
    out.write('{"error": {}}')
    out.write('\n', () => out.abort(new Error('failed after its 200')))
    expect(await readChunk(reader)).toBe('{"error": {}}')
    expect(await readChunk(reader)).toBe('\n')
    await expect(reader.read()).rejects.toThrow('failed after its 200')
    expect(out.open).toBe(false)
  })

  it('writes the keep-alive frame after keepAliveMs without a write, and not while writes keep coming', async () => {
    const { out } = writer({ keepAliveMs: 40 })
    const reader = out.body.getReader()
    out.write('data: 1\n\n')
    expect(await readChunk(reader)).toBe('data: 1\n\n')
    expect(await readChunk(reader)).toBe(': keep-alive\n\n')
    out.close()
    expect((await reader.read()).done).toBe(true)
  })

  it('probes at once when told to, so a client that left while waiting for the headers is noticed', async () => {
    const { out } = writer({ probeAtOnce: true, idleFrames: { keepAlive: ' ', probe: ' ' } })
    const reader = out.body.getReader()
    expect(await readChunk(reader)).toBe(' ')
    out.close()
    expect((await reader.read()).done).toBe(true)
  })
})
