// A loopback server that answers POST /v1/chat/completions with a captured vLLM response, byte
// for byte, so the Worker can be tested against real output rather than the emulator's idea of
// it. The capture is chosen by name inside the request's messages (see test/support/fixtures.ts)
// and written in many small pieces, cut mid-line and mid-UTF-8 character, each write waiting for
// the previous one to be handed to the socket so the pieces leave separately.
//
//   POST /v1/chat/completions   the named capture with its recorded status and content type
//   GET  /fixtures/<name>       the capture's raw bytes, for the tests to state their expectations
//   anything else               404
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { VLLM_FIXTURES, fixtureNamedIn, writePlan, type FixtureName } from '../support/fixtures.ts'

const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/vllm/', import.meta.url))
/** Bodies larger than this are refused; the Worker's requests here are a few hundred bytes. */
const MAX_REQUEST_BYTES = 1024 * 1024

export interface FixtureServer {
  url: string
  close(): Promise<void>
}

async function loadFixtures(): Promise<Map<FixtureName, Uint8Array>> {
  const entries = await Promise.all(
    (Object.keys(VLLM_FIXTURES) as FixtureName[]).map(
      async (name) => [name, await readFile(FIXTURE_DIR + VLLM_FIXTURES[name].file)] as const,
    ),
  )
  return new Map(entries)
}

async function readBody(request: IncomingMessage): Promise<string> {
  const parts: Buffer[] = []
  let size = 0
  for await (const part of request as AsyncIterable<Buffer>) {
    size += part.length
    if (size > MAX_REQUEST_BYTES) throw new Error('request body too large')
    parts.push(part)
  }
  return Buffer.concat(parts).toString('utf8')
}

function write(response: ServerResponse, piece: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => response.write(piece, (error) => (error ? reject(error) : resolve())))
}

async function replay(response: ServerResponse, name: FixtureName, bytes: Uint8Array): Promise<void> {
  const fixture = VLLM_FIXTURES[name]
  response.writeHead(fixture.status, { 'content-type': fixture.contentType, 'cache-control': 'no-cache' })
  for (const piece of writePlan(bytes)) {
    if (response.destroyed) return
    await write(response, piece)
  }
  response.end()
}

function notFound(response: ServerResponse, message: string): void {
  response.writeHead(404, { 'content-type': 'application/json' })
  response.end(JSON.stringify({ error: { message, type: 'NotFoundError', param: null, code: 404 } }))
}

async function handle(request: IncomingMessage, response: ServerResponse, fixtures: Map<FixtureName, Uint8Array>): Promise<void> {
  const path = new URL(request.url ?? '/', 'http://fixture.local').pathname
  if (request.method === 'POST' && path === '/v1/chat/completions') {
    const name = fixtureNamedIn(await readBody(request))
    const bytes = name ? fixtures.get(name) : undefined
    if (!name || !bytes) return notFound(response, 'No capture is named in the request.')
    return replay(response, name, bytes)
  }
  const named = /^\/fixtures\/([a-z0-9.-]+)$/.exec(path)?.[1] as FixtureName | undefined
  const bytes = named ? fixtures.get(named) : undefined
  if (request.method === 'GET' && named && bytes) {
    response.writeHead(200, { 'content-type': VLLM_FIXTURES[named].contentType })
    response.end(bytes)
    return
  }
  notFound(response, `No route for ${request.method ?? ''} ${path}.`)
}

export async function startFixtureServer(): Promise<FixtureServer> {
  const fixtures = await loadFixtures()
  const server = createServer((request, response) => {
    handle(request, response, fixtures).catch(() => response.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
}
