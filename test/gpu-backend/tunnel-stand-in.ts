// A stand-in for cloudflared on loopback: it applies gpu-backend/tunnel/config.yml's ingress
// rules to every request as if it had arrived for one tunnel hostname, forwards what a rule lets
// through to the emulator standing in for that rule's service, answers 404 to the rest (the
// catch-all http_status:404), and keeps the method, path and outcome of every request it saw.
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { matchingRule, type IngressRule } from './tunnel-support.ts'

export interface SeenRequest {
  method: string
  path: string
  /** The rule's service: http://vllm-N:8000, or http_status:404. */
  service: string
}

export interface TunnelStandIn {
  url: string
  seen: SeenRequest[]
  close(): Promise<void>
}

/** `origins` maps each rule service (http://vllm-0:8000) to the emulator URL standing in for it. */
export async function startTunnelStandIn(
  rules: readonly IngressRule[],
  hostname: string,
  origins: Record<string, string>,
): Promise<TunnelStandIn> {
  const seen: SeenRequest[] = []
  const server = createServer((req, res) => {
    const raw = new URL(req.url ?? '/', 'http://stand-in').pathname
    let path: string
    try {
      // cloudflared matches Go's URL.Path: percent-decoded, without the query.
      path = decodeURIComponent(raw)
    } catch {
      res.writeHead(400).end()
      return
    }
    const { service } = matchingRule(rules, hostname, path)
    seen.push({ method: req.method ?? '', path, service })
    const origin = origins[service]
    if (origin === undefined) {
      res.writeHead(service === 'http_status:404' ? 404 : 502).end()
      return
    }
    forward(req, res, origin)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** Streams the request to the origin and the answer back, chunk by chunk (SSE stays live). */
function forward(req: IncomingMessage, res: ServerResponse, origin: string): void {
  const target = new URL(req.url ?? '/', origin)
  const upstream = httpRequest(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers)
    answer.pipe(res)
  })
  upstream.on('error', () => res.destroy())
  res.on('close', () => upstream.destroy())
  req.pipe(upstream)
}
