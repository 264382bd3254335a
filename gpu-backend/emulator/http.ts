// Small HTTP helpers that give responses the headers uvicorn/Starlette give them.

import type { IncomingMessage, ServerResponse } from 'node:http'

/** uvicorn names itself in every response; Node adds `date` as uvicorn does. */
export const SERVER_HEADER = { server: 'uvicorn' }

export const SSE_HEADERS = { ...SERVER_HEADER, 'content-type': 'text/event-stream; charset=utf-8' }

/** The largest request body read; beyond it the request is refused with 413. */
export const MAX_BODY_BYTES = 16 * 1024 * 1024

function send(res: ServerResponse, status: number, contentType: string | null, body: string): void {
  if (res.headersSent || res.destroyed) return
  const bytes = Buffer.from(body, 'utf8')
  const headers: Record<string, string | number> = { ...SERVER_HEADER, 'content-length': bytes.length }
  if (contentType !== null) headers['content-type'] = contentType
  res.writeHead(status, headers)
  res.end(bytes)
}

/** Starlette's JSONResponse: `content-type: application/json` and a content-length. */
export function sendJson(res: ServerResponse, status: number, body: string): void {
  send(res, status, 'application/json', body)
}

export function sendText(res: ServerResponse, status: number, contentType: string, body: string): void {
  send(res, status, contentType, body)
}

/** A bodiless answer such as vLLM's /health: just the status and content-length: 0. */
export function sendEmpty(res: ServerResponse, status: number): void {
  send(res, status, null, '')
}

/** The whole request body as UTF-8 text, or null when it is larger than MAX_BODY_BYTES. */
export async function readBody(req: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const buffer = chunk as Buffer
    size += buffer.length
    if (size > MAX_BODY_BYTES) return null
    chunks.push(buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** JSON.parse that answers undefined instead of throwing. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}
