// The load test's command line: defaults, where the key comes from, the URL forms it accepts, and
// a clear usage error (exit 2) for every bad value before any request is sent.
import { describe, expect, it } from 'vitest'
import { UsageError } from '../../scripts/cli-support.ts'
import { DEFAULT_PROMPT, parseCommand, type Settings } from '../../scripts/loadtest/options.ts'
import { progressLine } from '../../scripts/loadtest/progress.ts'
import { requestsPerRun } from '../../scripts/loadtest/runner.ts'

function settings(argv: string[], env: Record<string, string> = {}): Settings {
  const command = parseCommand(argv, env)
  if (command.name !== 'run') throw new Error('expected a run')
  return command.settings
}

describe('loadtest options', () => {
  it('has defaults for everything but --url', () => {
    expect(settings(['--url', 'http://127.0.0.1:8787'])).toEqual({
      baseUrl: 'http://127.0.0.1:8787',
      key: null,
      model: null,
      concurrency: 4,
      requests: 20,
      runs: 1,
      maxTokens: 256,
      prompt: DEFAULT_PROMPT,
      timeoutMs: 120_000,
      json: false,
    })
  })

  it.each([
    ['http://10.0.0.5:8000/v1', 'http://10.0.0.5:8000'],
    ['http://10.0.0.5:8000/v1/', 'http://10.0.0.5:8000'],
    ['https://gw.example/', 'https://gw.example'],
    ['https://gw.example/vllm/v1', 'https://gw.example/vllm'],
  ])('takes --url %s with or without /v1 as the base %s', (url, base) => {
    expect(settings(['--url', url]).baseUrl).toBe(base)
  })

  it('takes the key from --key, else LOADTEST_API_KEY, else OPENAI_API_KEY', () => {
    const env = { LOADTEST_API_KEY: 'sk-load', OPENAI_API_KEY: 'sk-openai' }
    expect(settings(['--url', 'http://h', '--key', 'sk-flag'], env).key).toBe('sk-flag')
    expect(settings(['--url', 'http://h'], env).key).toBe('sk-load')
    expect(settings(['--url', 'http://h'], { OPENAI_API_KEY: 'sk-openai', LOADTEST_API_KEY: '' }).key).toBe('sk-openai')
  })

  it('reads every number and flag', () => {
    const argv = [
      '--url',
      'http://h',
      '--model',
      'm',
      '--concurrency',
      '64',
      '--requests',
      '1000',
      '--runs',
      '1',
      '--max-tokens',
      '32',
      '--prompt',
      'Hi',
      '--timeout-ms',
      '500',
      '--json',
    ]
    expect(settings(argv)).toMatchObject({
      model: 'm',
      concurrency: 64,
      requests: 1000,
      runs: 1,
      maxTokens: 32,
      prompt: 'Hi',
      timeoutMs: 500,
      json: true,
    })
  })

  it.each([
    [[], 'Missing --url'],
    [['--url', 'http://h', '--concurrency', '0'], '--concurrency takes a whole number from 1 to 4096 (requests in flight at once), got: 0'],
    [['--url', 'http://h', '--requests', '1.5'], '--requests takes a whole number from 1 to 1000000'],
    [['--url', 'http://h', '--runs=-1'], '--runs takes a whole number'],
    [['--url', 'http://h', '--runs', '101'], '--runs takes a whole number from 1 to 100'],
    [['--url', 'http://h', '--requests', '3', '--runs', '4'], '--runs 4 is more than --requests 3'],
    [['--url', 'http://h', '--runs', '21'], '--runs 21 is more than --requests 20'],
    [['--url', 'http://h', '--max-tokens', '1e3'], '--max-tokens takes a whole number'],
    [['--url', 'http://h', '--timeout-ms', ''], '--timeout-ms takes a whole number'],
    [['--url', 'http://h', '--concurrency', '0x10'], '--concurrency takes a whole number'],
    [['--url', 'ftp://h'], '--url takes an http(s) URL'],
    [['--url', 'http://h/v1?x=1'], '--url takes an http(s) URL'],
    [['--url', 'not a url'], '--url takes an http(s) URL'],
    [['--url', 'http://user:pass@h'], '--url must not hold credentials'],
    [['--url', 'http://h', '--key', ' '], '--key is empty'],
    [['--url', 'http://h', '--prompt', ''], '--prompt is empty'],
    [['--url', 'http://h', '--bogus'], "Unknown option '--bogus'"],
    [['--url'], "Option '--url <value>' argument missing"],
    [['--url', 'http://h', 'extra'], 'Unexpected argument: extra'],
  ])('rejects %j with a usage error', (argv, message) => {
    expect(() => parseCommand(argv, {})).toThrow(UsageError)
    expect(() => parseCommand(argv, {})).toThrow(message)
  })

  it('answers --help before checking anything else', () => {
    expect(parseCommand(['--help', '--runs', '0'], {})).toEqual({ name: 'help' })
  })
})

describe('requests per run', () => {
  it('splits --requests over the runs, the earlier runs taking the remainder, and sends no more than asked', () => {
    expect(requestsPerRun(20, 1)).toEqual([20])
    expect(requestsPerRun(20, 5)).toEqual([4, 4, 4, 4, 4])
    expect(requestsPerRun(20, 3)).toEqual([7, 7, 6])
    expect(requestsPerRun(3, 3)).toEqual([1, 1, 1])
    for (let requests = 1; requests <= 40; requests++)
      for (let runs = 1; runs <= requests; runs++) {
        const counts = requestsPerRun(requests, runs)
        expect(counts.reduce((sum, count) => sum + count, 0)).toBe(requests)
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1)
      }
  })
})

describe('progress line', () => {
  it('shows the run, the requests done and the errors, within the terminal width', () => {
    const line = progressLine({ run: 2, runs: 5, done: 10, total: 20, errors: 1 }, 80)
    expect(line).toMatch(/^run 2\/5 \[=+> +\] 10\/20 requests, 1 error$/)
    expect(line.length).toBeLessThan(80)
    expect(progressLine({ run: 1, runs: 1, done: 3, total: 3, errors: 0 }, 36)).toBe('run 1/1 3/3 requests, 0 errors')
  })
})
