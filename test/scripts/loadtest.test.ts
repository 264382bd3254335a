// `npm run loadtest` against real vLLM emulators with known timing: in-process through its main
// function (output captured), and once as a process for the exit code and the --json document.
// A request failure makes the exit code 1 with the full report still printed; a key the endpoint
// refuses while listing models stops the test before it starts (exit 1, one clear message).
import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startEmulator, type Emulator } from '../../gpu-backend/emulator/server.ts'
import { runLoadtestCli } from '../../scripts/loadtest/cli.ts'
import type { Report } from '../../scripts/loadtest/report.ts'
import { ROOT } from '../../scripts/processes.ts'
import type { Run } from './cli-support.ts'

const KEY = 'sk-loadtest-secret-5f1c0e'
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const TTFT_MS = 25
const ITL_MS = 4
/** Reasoning 6 + content 3 + </think> + EOS. */
const COMPLETION_TOKENS = 11
/** Timers on a shared 2-core machine run late, never much early: libuv counts from its cached ms clock. */
const SLACK_MS = 150

let emulator: Emulator
beforeAll(async () => {
  emulator = await startEmulator({
    reasoningParser: 'deepseek_r1',
    servedModelName: MODEL,
    apiKey: KEY,
    ttftMs: TTFT_MS,
    itlMs: ITL_MS,
    reasoningTokens: 6,
    contentTokens: 3,
  })
})
afterAll(() => emulator?.close())
afterEach(() => {
  emulator.configure({ fault: 'none' })
  emulator.reset()
})

interface Captured extends Run {
  /** What went to the progress stream. */
  progress: string
}

/** The CLI in-process; the key comes from the environment unless the arguments give one. */
async function loadtest(args: string[], options: { tty?: boolean; env?: Record<string, string> } = {}): Promise<Captured> {
  const stdout: string[] = []
  const stderr: string[] = []
  const progress: string[] = []
  const code = await runLoadtestCli(args, {
    out: { log: (text) => stdout.push(text), error: (text) => stderr.push(text) },
    progress: { isTTY: options.tty ?? false, columns: 100, write: (text) => progress.push(text) },
    env: options.env ?? { LOADTEST_API_KEY: KEY },
  })
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n'), progress: progress.join('') }
}

/** 6 requests in all, in 2 runs of 3. */
const small = (...extra: string[]) => ['--url', emulator.url, '--concurrency', '2', '--requests', '6', '--runs', '2', ...extra]

function expectNoKey(run: Captured | Run): void {
  expect(`${run.stdout}${run.stderr}${'progress' in run ? run.progress : ''}`).not.toContain(KEY)
}

describe('loadtest against the emulator', () => {
  it('measures TTFT, ITL and tokens/s that match the emulator timing, and sends exactly --requests, split over the runs', async () => {
    const run = await loadtest(small('--json'))
    expect(run).toMatchObject({ code: 0, stderr: '', progress: '' })
    const report = JSON.parse(run.stdout) as Report
    expect(report).toMatchObject({ endpoint: `${emulator.url}/v1/chat/completions`, model: MODEL, percentiles: 'nearest-rank' })
    expect(report.runs).toHaveLength(2)
    for (const summary of report.runs) {
      expect(summary).toMatchObject({ requests: 3, succeeded: 3, completionTokens: 3 * COMPLETION_TOKENS, errors: { total: 0 } })
      // The emulator sends the first token ttft after it received the request, which is after sending.
      expect(summary.ttftMs.p50).toBeGreaterThanOrEqual(TTFT_MS - 1)
      expect(summary.ttftMs.p99).toBeLessThan(TTFT_MS + SLACK_MS)
      expect(summary.itlMs.p50).toBeGreaterThanOrEqual(ITL_MS - 1)
      expect(summary.itlMs.p50).toBeLessThan(ITL_MS + SLACK_MS / 3)
      // (11 − 1) tokens over 10 decode steps of ITL_MS: at most 1000 / ITL_MS, less when timers run late.
      expect(summary.tokensPerSecond.perRequest).toBeLessThanOrEqual(1000 / (ITL_MS - 1))
      expect(summary.tokensPerSecond.perRequest).toBeGreaterThan(1000 / (ITL_MS + SLACK_MS / 3))
      expect(summary.tokensPerSecond.aggregate).toBeCloseTo((3 * COMPLETION_TOKENS) / (summary.wallMs / 1000), 2)
    }
    expect(report.acrossRuns.ttftP50Ms.runs).toBe(2)
    expect(report.acrossRuns.ttftP50Ms.sd).not.toBeNull()
    expect(report.acrossRuns.errors).toEqual({ mean: 0, sd: 0, runs: 2 })
    expect(emulator.stats()).toMatchObject({ requests: 6, completed: 6, aborted: 0, tokensGenerated: 6 * COMPLETION_TOKENS })
    expectNoKey(run)
  })

  it('prints per-run and across-run tables, and draws the progress bar only on a TTY', async () => {
    const run = await loadtest(small('--model', MODEL), { tty: true })
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(run.stdout).toContain(`Load test of ${emulator.url}/v1/chat/completions, model ${MODEL}`)
    expect(run.stdout).toMatch(/^run\s+ok\s+errors\s+TTFT p50\s+TTFT p99\s+ITL p50\s+ITL p99\s+tok\/s req\s+tok\/s all\s+wall s$/m)
    expect(run.stdout).toMatch(/^1\s+3\/3\s+0(\s+\d+\.\d\d){7}$/m)
    expect(run.stdout).toMatch(/^2\s+3\/3\s+0(\s+\d+\.\d\d){7}$/m)
    expect(run.stdout).toMatch(/^TTFT p50 \(ms\)\s+\d+\.\d\d\s+\d+\.\d\d$/m)
    expect(run.stdout).toContain('No errors in 6 requests.')
    expect(run.progress).toContain('run 2/2 [')
    expect(run.progress).toContain('3/3 requests, 0 errors')
    expect(run.progress.endsWith('\r\x1b[2K')).toBe(true)
    expect(run.stdout).not.toContain('\r')
    expectNoKey(run)
  })

  it("sends exactly 20 requests for --requests 20, in one run by default (it sent 5 runs of 20, past a key's 60 a minute)", async () => {
    const run = await loadtest(['--url', emulator.url, '--model', MODEL, '--requests', '20'])
    expect(run).toMatchObject({ code: 0, stderr: '' })
    expect(emulator.stats()).toMatchObject({ requests: 20, completed: 20 })
    expect(run.stdout).toContain('20 requests in 1 run, concurrency 4')
    expect(run.stdout).toMatch(/^1\s+20\/20\s+0(\s+\d+\.\d\d){7}$/m)
    // One run has no spread to report: no across-runs table.
    expect(run.stdout).not.toContain('across')
    expect(run.stdout).toContain('No errors in 20 requests.')
  })

  it('splits --requests over --runs as evenly as it can, and reports the spread across them', async () => {
    const run = await loadtest(['--url', emulator.url, '--model', MODEL, '--requests', '7', '--runs', '3', '--json'])
    expect(run.code).toBe(0)
    const report = JSON.parse(run.stdout) as Report
    expect(report.settings).toMatchObject({ requests: 7, runs: 3, requestsPerRun: [3, 2, 2] })
    expect(report.runs.map((summary) => summary.requests)).toEqual([3, 2, 2])
    expect(report.acrossRuns.ttftP50Ms.runs).toBe(3)
    expect(emulator.stats().requests).toBe(7)
    emulator.reset()
    const human = await loadtest(['--url', emulator.url, '--model', MODEL, '--requests', '7', '--runs', '3'])
    expect(human.stdout).toContain('7 requests in 3 runs (3, 2, 2), concurrency 4')
    expect(human.stdout).toMatch(/^across 3 runs\s+mean\s+sd$/m)
    expect(human.stdout).toContain('No errors in 7 requests.')
  })

  it('draws no progress bar with --json, even on a TTY', async () => {
    const run = await loadtest(small('--json', '--runs', '1'), { tty: true })
    expect(run).toMatchObject({ code: 0, progress: '' })
  })

  it.each([
    ['refuse:503', [], 'http_503', /Service Unavailable/],
    ['error_after:2', [], 'stream_error', /EngineCore encountered an issue/],
    ['die_after:2', [], 'incomplete', /terminated/],
    ['malformed_after:1', [], 'malformed', /not JSON/],
    ['stall_after:1', ['--timeout-ms', '150'], 'timeout', /within 150 ms/],
  ])('counts every request as failed under fault %s, by kind, and exits 1 with the report', async (fault, extra, kind, message) => {
    emulator.configure({ fault })
    const run = await loadtest(small('--json', ...extra))
    expect(run.code).toBe(1)
    expect(run.stderr).toBe('6 of 6 requests failed.')
    const report = JSON.parse(run.stdout) as Report
    expect(report.errors.byKind).toEqual({ [kind]: 6 })
    expect(report.errors.examples[kind]).toMatch(message)
    expect(report.runs.map((summary) => summary.errors.byKind)).toEqual([{ [kind]: 3 }, { [kind]: 3 }])
    expect(report.runs[0]?.ttftMs).toEqual({ p50: null, p99: null })
    expect(emulator.stats().requests).toBe(6)
  })

  it('stops before sending any completion when the endpoint refuses the key while listing models', async () => {
    const run = await loadtest(small(), { env: { LOADTEST_API_KEY: 'sk-wrong-key-0000' } })
    expect(run).toMatchObject({ code: 1, stdout: '' })
    expect(run.stderr).toContain(`Could not list the models at ${emulator.url}/v1/models: HTTP 401`)
    expect(run.stderr).toContain('The endpoint refused the API key: check --key, LOADTEST_API_KEY or OPENAI_API_KEY.')
    expect(run.stderr).not.toContain('sk-wrong-key-0000')
    expect(emulator.stats().requests).toBe(0)
  })

  it('with --model and a refused key, reports every request as http_401 with a hint, and exits 1', async () => {
    const run = await loadtest(small('--model', MODEL, '--key', 'sk-wrong-key-0000'))
    expect(run.code).toBe(1)
    expect(run.stdout).toMatch(/^1\s+0\/3\s+3(\s+-){6}\s+\d+\.\d\d$/m)
    expect(run.stdout).toContain('6 of 6 requests failed:\n  http_401  6  (first: HTTP 401 Unauthorized: Unauthorized)')
    expect(run.stdout).toContain('The endpoint refused the API key (401/403)')
    expect(`${run.stdout}${run.stderr}`).not.toContain('sk-wrong-key-0000')
    expect(emulator.stats()).toMatchObject({ requests: 6, streamsStarted: 0 })
  })

  it('counts a closed port as network errors', async () => {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    await new Promise((resolve) => server.close(resolve))
    const run = await loadtest(['--url', `http://127.0.0.1:${port}`, '--model', MODEL, '--requests', '2', '--runs', '1', '--json'])
    expect(run.code).toBe(1)
    expect((JSON.parse(run.stdout) as Report).errors.byKind).toEqual({ network: 2 })
  })

  it('never prints the key, even when the endpoint echoes it in an error', async () => {
    const echo = createServer((req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { message: `bad header: ${req.headers.authorization}` } }))
    })
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`
      const listing = await loadtest(['--url', url, '--requests', '1', '--runs', '1'])
      const completions = await loadtest(['--url', url, '--model', MODEL, '--requests', '1', '--runs', '1'])
      expect(listing.stderr).toContain('bad header: Bearer [redacted]')
      expect(completions.stdout).toContain('bad header: Bearer [redacted]')
      expectNoKey(listing)
      expectNoKey(completions)
    } finally {
      await new Promise((resolve) => echo.close(resolve))
    }
  })

  it('rejects a bad number with exit 2 and the usage, sending nothing', async () => {
    const run = await loadtest(['--url', emulator.url, '--concurrency', '0'])
    expect(run).toMatchObject({ code: 2, stdout: '' })
    expect(run.stderr).toContain('--concurrency takes a whole number from 1 to 4096')
    expect(run.stderr).toContain('Usage: npm run loadtest -- --url URL [options]')
    expect(emulator.stats().requests).toBe(0)
  })
})

/** scripts/loadtest.ts as a process, with the key in its environment (not in its arguments). */
function loadtestProcess(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    const env = { ...process.env, LOADTEST_API_KEY: KEY }
    execFile(process.execPath, [join(ROOT, 'scripts/loadtest.ts'), ...args], { cwd: ROOT, env }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
    })
  })
}

describe('scripts/loadtest.ts as a process', () => {
  it('exits 0 with one JSON document on stdout and nothing on a non-TTY stderr', async () => {
    const run = await loadtestProcess(['--url', `${emulator.url}/v1/`, '--concurrency', '2', '--requests', '4', '--runs', '2', '--json'])
    expect(run).toMatchObject({ code: 0, stderr: '' })
    const report = JSON.parse(run.stdout) as Report
    expect(report.runs.map((summary) => summary.succeeded)).toEqual([2, 2])
    expect(report.errors.total).toBe(0)
    expect(emulator.stats()).toMatchObject({ requests: 4, completed: 4 })
    expectNoKey(run)
  })

  it('exits 2 for a bad command line', async () => {
    const run = await loadtestProcess(['--url', emulator.url, '--runs', 'five'])
    expect(run).toMatchObject({ code: 2, stdout: '' })
    expect(run.stderr).toContain('--runs takes a whole number from 1 to 100 (runs), got: five')
  })
})
