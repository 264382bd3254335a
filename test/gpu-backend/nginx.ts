// Real nginx (Debian's /usr/sbin/nginx; .ci/run installs nginx-light) run from
// gpu-backend/tunnel/nginx.conf, filled in as its header says, in a temporary prefix on 127.0.0.1:
// no root-owned directory, no daemon, the error log on stderr.
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startChild, waitForLine, type Child } from '../../scripts/processes.ts'
import { GPU_BACKEND } from './support.ts'

export const NGINX = '/usr/sbin/nginx'
export const NGINX_TEMPLATE = join(GPU_BACKEND, 'tunnel/nginx.conf')

export interface Route {
  method: string
  path: string
}

/** The template with its two variables filled in, as `envsubst '${VLLM_UPSTREAM} ${NGINX_LISTEN}'` would. */
export function fillTemplate(template: string, values: { VLLM_UPSTREAM: string; NGINX_LISTEN: string }): string {
  return template.replace(/\$\{(VLLM_UPSTREAM|NGINX_LISTEN)\}/g, (_, name: keyof typeof values) => values[name])
}

/**
 * The allow-list the config enforces: each `location = PATH { if ($request_method != METHOD) ...`
 * block. A location = without such a method check counts as method "*", so it cannot pass unseen.
 */
export function configAllowList(config: string): Route[] {
  const routes: Route[] = []
  for (const [, path, body] of config.matchAll(/^\s*location\s*=\s*(\S+)\s*\{([\s\S]*?)^\s*\}/gm)) {
    const method = /if \(\$request_method != (\w+)\)/.exec(body ?? '')?.[1] ?? '*'
    routes.push({ method, path: path ?? '' })
  }
  return routes
}

export function allowList(): Route[] {
  const file = JSON.parse(readFileSync(join(GPU_BACKEND, 'tunnel/allow-list.json'), 'utf8')) as { routes: Route[] }
  return file.routes.map(({ method, path }) => ({ method, path }))
}

/**
 * vLLM v0.11.0's routes, each with a concrete path to send (its `sample` where the path has a
 * {parameter}): gpu-backend/tunnel/vllm-v0.11.0-routes.json when it exists; until then the
 * routes read here from api_server.py at 8d7da92fd (its @router decorators and the /metrics
 * mount), development-mode routes included.
 */
export function vllmRoutes(): { source: string; routes: Route[] } {
  const file = join(GPU_BACKEND, 'tunnel/vllm-v0.11.0-routes.json')
  if (existsSync(file)) {
    const listed = JSON.parse(readFileSync(file, 'utf8')) as { routes: (Route & { sample?: string })[] }
    return {
      source: 'gpu-backend/tunnel/vllm-v0.11.0-routes.json',
      routes: listed.routes.map(({ method, path, sample }) => ({ method, path: sample ?? path })),
    }
  }
  const post = (path: string): Route => ({ method: 'POST', path })
  const get = (path: string): Route => ({ method: 'GET', path })
  return {
    source: 'fallback list in test/gpu-backend/nginx.ts (vllm/entrypoints/openai/api_server.py at 8d7da92fd)',
    routes: [
      get('/health'),
      get('/load'),
      get('/ping'),
      post('/ping'),
      post('/tokenize'),
      post('/detokenize'),
      get('/tokenizer_info'),
      get('/v1/models'),
      get('/version'),
      post('/v1/responses'),
      get('/v1/responses/resp_1'),
      post('/v1/responses/resp_1/cancel'),
      post('/v1/chat/completions'),
      post('/v1/completions'),
      post('/v1/embeddings'),
      post('/pooling'),
      post('/classify'),
      post('/score'),
      post('/v1/score'),
      post('/v1/audio/transcriptions'),
      post('/v1/audio/translations'),
      post('/rerank'),
      post('/v1/rerank'),
      post('/v2/rerank'),
      get('/server_info'),
      post('/reset_prefix_cache'),
      post('/sleep'),
      post('/wake_up'),
      get('/is_sleeping'),
      post('/collective_rpc'),
      post('/scale_elastic_ep'),
      post('/is_scaling_elastic_ep'),
      post('/invocations'),
      post('/start_profile'),
      post('/stop_profile'),
      post('/v1/load_lora_adapter'),
      post('/v1/unload_lora_adapter'),
      get('/metrics'),
    ],
  }
}

/** A port free on 127.0.0.1 a moment ago (nginx cannot be told to pick one and report it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

export interface RunningNginx {
  url: string
  /** The config nginx runs, as filled in. */
  config: string
  /** Access-log lines ("METHOD URI" STATUS upstream=ADDR) written so far. */
  accessLog(): Promise<string[]>
  /** `nginx -t` on the same files. */
  test(): Promise<{ code: number; output: string }>
  stop(): Promise<void>
}

function nginxArgs(prefix: string, extra: string[] = []): string[] {
  const conf = join(prefix, 'nginx.conf')
  // notice: nginx then prints "start worker process" once it listens, the event waited for.
  return [...extra, '-p', `${prefix}/`, '-c', conf, '-g', `daemon off; pid ${join(prefix, 'nginx.pid')}; error_log stderr notice;`]
}

export async function startNginx(upstream: string): Promise<RunningNginx> {
  const prefix = await mkdtemp(join(tmpdir(), 'nginx-allow-list-'))
  await mkdir(join(prefix, 'logs'))
  await mkdir(join(prefix, 'temp'))
  const port = await freePort()
  const config = fillTemplate(readFileSync(NGINX_TEMPLATE, 'utf8'), {
    VLLM_UPSTREAM: upstream,
    NGINX_LISTEN: `127.0.0.1:${port}`,
  })
  await writeFile(join(prefix, 'nginx.conf'), config)
  let child: Child | undefined
  try {
    child = startChild(NGINX, nginxArgs(prefix))
    await waitForLine(child.process, /start worker process/, 10_000)
  } catch (error) {
    await child?.stop()
    await rm(prefix, { recursive: true, force: true })
    throw error
  }
  const running = child
  return {
    url: `http://127.0.0.1:${port}`,
    config,
    accessLog: async () => (await readFile(join(prefix, 'logs/vllm-access.log'), 'utf8')).split('\n').filter(Boolean),
    test: () =>
      new Promise((resolve) => {
        execFile(NGINX, nginxArgs(prefix, ['-t']), (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code) : 0, output: `${stdout}${stderr}` }),
        )
      }),
    stop: async () => {
      await running.stop()
      await rm(prefix, { recursive: true, force: true })
    },
  }
}
