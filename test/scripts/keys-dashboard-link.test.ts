import { describe, expect, it } from 'vitest'
import { runKeysCli, type CliDeps } from '../../scripts/keys/cli.ts'

const ADMIN_KEY = `sk-${'d'.repeat(43)}`
const LINK = { object: 'dashboard.link', url: 'https://gateway.example/dashboard/link?token=abc.def', expires_at: 1_800_000_000 }

async function run(argv: string[], deps: Partial<CliDeps>) {
  const stdout: string[] = []
  const stderr: string[] = []
  const out = { log: (text: string) => stdout.push(text), error: (text: string) => stderr.push(text) }
  const code = await runKeysCli(['dashboard-link', ...argv], { env: { GATEWAY_ADMIN_KEY: ADMIN_KEY }, ...deps, out })
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') }
}

function worker(body: unknown, status = 201) {
  const calls: { url: string; method: string | undefined; authorization: string | null }[] = []
  const fetch: CliDeps['fetch'] = async (url, init) => {
    calls.push({ url, method: init.method, authorization: new Headers(init.headers).get('authorization') })
    return Response.json(body, { status })
  }
  return { calls, fetch }
}

describe('keys dashboard-link', () => {
  it('asks the Worker for a sign-in link with the admin key from the environment, and prints it', async () => {
    const fake = worker(LINK)
    const result = await run(['--url', 'https://gateway.example/'], fake)
    expect(result).toMatchObject({ code: 0, stderr: '' })
    expect(fake.calls).toEqual([
      { url: 'https://gateway.example/v1/dashboard/links', method: 'POST', authorization: `Bearer ${ADMIN_KEY}` },
    ])
    expect(result.stdout.split('\n')[0]).toBe(LINK.url)
    expect(result.stdout).toContain('Valid until 2027-01-15T08:00:00.000Z')
    expect(result.stdout).not.toContain(ADMIN_KEY)
  })

  it('prints the answer as JSON with --json', async () => {
    const result = await run(['--url', 'http://127.0.0.1:8787', '--json'], worker(LINK))
    expect(JSON.parse(result.stdout)).toEqual(LINK)
  })

  it("passes on the Worker's refusal and exits 1", async () => {
    const refusal = {
      error: {
        message: "This API key does not have the 'admin' scope.",
        type: 'permission_error',
        param: null,
        code: 'insufficient_scope',
      },
    }
    const result = await run(['--url', 'http://127.0.0.1:8787'], worker(refusal, 403))
    expect(result.code).toBe(1)
    expect(result.stderr).toContain("does not have the 'admin' scope. (HTTP 403)")
  })

  it('exits 2 without GATEWAY_ADMIN_KEY or --url, before asking anything', async () => {
    const fake = worker(LINK)
    expect((await run(['--url', 'http://127.0.0.1:8787'], { ...fake, env: {} })).code).toBe(2)
    expect((await run([], fake)).code).toBe(2)
    expect((await run(['--url', 'http://127.0.0.1:8787', 'extra'], fake)).code).toBe(2)
    expect(fake.calls).toEqual([])
  })
})
