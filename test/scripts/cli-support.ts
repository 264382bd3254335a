// What the CLI tests share: a fresh --persist-to directory that Miniflare opens, as wrangler dev
// would, to check what the CLI wrote through wrangler, and the CLI run as a process on it.
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Miniflare, convertV4MiniflareOptions } from 'miniflare'
import { afterAll, beforeAll } from 'vitest'
import { ROOT } from '../../scripts/processes.ts'

type KVNamespace = Awaited<ReturnType<Miniflare['getKVNamespace']>>

export interface LocalKv {
  /** The state directory, for --persist-to. */
  dir: string
  /** The namespace in it, as the Worker sees it. */
  kv: KVNamespace
}

/**
 * Makes the state directory with one namespace, `binding` (local id `namespaceId`), before the
 * file's tests and removes it after them: read the fields inside tests, not at load time.
 */
export function useLocalKv(prefix: string, binding: string, namespaceId: string): LocalKv {
  const local = {} as LocalKv
  let miniflare: Miniflare | undefined
  beforeAll(async () => {
    local.dir = await mkdtemp(join(tmpdir(), prefix))
    // Opened before the CLI writes anything: a running wrangler dev must see what is written later.
    miniflare = new Miniflare(
      convertV4MiniflareOptions({
        modules: true,
        script: 'export default { fetch: () => new Response() }',
        resourcePersistencePath: join(local.dir, 'v3'),
        kvNamespaces: { [binding]: namespaceId },
      }),
    )
    local.kv = await miniflare.getKVNamespace(binding)
  })
  afterAll(async () => {
    await miniflare?.dispose()
    if (local.dir) await rm(local.dir, { recursive: true, force: true })
  })
  return local
}

export interface Run {
  code: number
  stdout: string
  stderr: string
}

/** `script` (relative to the project root) as a process on the local state in `dir`. */
export function runCliScript(script: string, dir: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, script), ...args, '--persist-to', dir], { cwd: ROOT }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
    })
  })
}
