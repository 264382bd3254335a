// The load test's command line, checked before any request is sent: a bad value is a UsageError
// (exit 2, usage on stderr). The key may come from the environment so that it stays out of `ps`.
import { noArguments, parseStrict, UsageError } from '../cli-support.ts'

export const DEFAULT_PROMPT = 'What is 17 * 23? Please reason step by step, and put your final answer within \\boxed{}.'

export interface Settings {
  /** The endpoint's base URL without /v1 and without a trailing slash. */
  baseUrl: string
  /** null: no Authorization header (a vLLM server started without --api-key). */
  key: string | null
  /** null: the first id GET /v1/models lists. */
  model: string | null
  concurrency: number
  /** Requests in all: split over the runs (runner.ts requestsPerRun), never multiplied by them. */
  requests: number
  /** Runs one after another; 1 unless asked. */
  runs: number
  maxTokens: number
  prompt: string
  timeoutMs: number
  json: boolean
}

export type Command = { name: 'help' } | { name: 'run'; settings: Settings }

/** Each number's default and ceiling: the ceilings catch typos, not real limits of a test. */
const NUMBERS = {
  concurrency: { default: 4, max: 4096, what: 'requests in flight at once' },
  requests: { default: 20, max: 1_000_000, what: 'requests in all, split evenly over the runs' },
  runs: { default: 1, max: 100, what: 'runs' },
  'max-tokens': { default: 256, max: 1_000_000, what: 'max_tokens of each request' },
  'timeout-ms': { default: 120_000, max: 3_600_000, what: 'ms each request may take in all' },
} as const

export const USAGE = `Usage: npm run loadtest -- --url URL [options]

Streams chat completions from an OpenAI-compatible endpoint (this Worker, or vLLM directly) and
reports time to first token (TTFT) and inter-token latency (ITL) at p50 and p99, tokens/s and
errors. --requests N sends N requests in all; with --runs R they are split into R runs one after
another, each figure reported per run and then its mean and standard deviation across the runs.

Options:
  --url URL          base URL, with or without /v1: requests go to URL/v1/chat/completions
  --key KEY          API key (Bearer). Better: set LOADTEST_API_KEY or OPENAI_API_KEY, which
                     stay out of the process list. Without any, no Authorization header is sent.
  --model ID         model name (default: the first id GET /v1/models lists)
  --concurrency N    ${NUMBERS.concurrency.what} (default ${NUMBERS.concurrency.default})
  --requests N       ${NUMBERS.requests.what} (default ${NUMBERS.requests.default})
  --runs N           split the requests into N runs (default ${NUMBERS.runs.default}, at most --requests); with 2 or more,
                     report each figure's mean and standard deviation across runs
  --max-tokens N     ${NUMBERS['max-tokens'].what} (default ${NUMBERS['max-tokens'].default})
  --prompt TEXT      the user message (default: a short math question)
  --timeout-ms N     ${NUMBERS['timeout-ms'].what}, headers and stream (default ${NUMBERS['timeout-ms'].default})
  --json             one JSON document on stdout instead of tables (and no progress bar)
  -h, --help         this text

Numbers are whole numbers from 1 up to: ${Object.entries(NUMBERS)
  .map(([name, rule]) => `--${name} ${rule.max}`)
  .join(', ')}.
Exit codes: 0 every request succeeded; 1 a request failed (the report is still printed) or the
load test could not start; 2 bad command line.`

const OPTIONS = {
  url: { type: 'string' },
  key: { type: 'string' },
  model: { type: 'string' },
  concurrency: { type: 'string' },
  requests: { type: 'string' },
  runs: { type: 'string' },
  'max-tokens': { type: 'string' },
  prompt: { type: 'string' },
  'timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

export function parseCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Command {
  const { values, positionals } = parseStrict(argv, OPTIONS)
  if (values.help) return { name: 'help' }
  noArguments(positionals)
  if (values.url === undefined) throw new UsageError('Missing --url, the endpoint to test (such as http://127.0.0.1:8787).')
  const number = (name: keyof typeof NUMBERS) => wholeNumber(name, values[name])
  const requests = number('requests')
  const runs = number('runs')
  if (runs > requests)
    throw new UsageError(`--runs ${runs} is more than --requests ${requests}: --requests counts every run's requests, each run needs one.`)
  return {
    name: 'run',
    settings: {
      baseUrl: baseUrl(values.url),
      key: apiKey(values.key, env),
      model: nonEmpty('--model', values.model) ?? null,
      concurrency: number('concurrency'),
      requests,
      runs,
      maxTokens: number('max-tokens'),
      prompt: nonEmpty('--prompt', values.prompt) ?? DEFAULT_PROMPT,
      timeoutMs: number('timeout-ms'),
      json: values.json === true,
    },
  }
}

/** A plain decimal whole number in range: no sign, exponent, fraction or hex, which Number() takes. */
function wholeNumber(name: keyof typeof NUMBERS, value: string | undefined): number {
  const rule = NUMBERS[name]
  if (value === undefined) return rule.default
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN
  if (!(parsed >= 1 && parsed <= rule.max))
    throw new UsageError(`--${name} takes a whole number from 1 to ${rule.max} (${rule.what}), got: ${value}`)
  return parsed
}

/** http(s) URL without query or fragment; a trailing / or /v1 is dropped (the paths add /v1/...). */
export function baseUrl(value: string): string {
  const rule = `--url takes an http(s) URL without query or fragment, such as http://127.0.0.1:8787 or http://10.0.0.5:8000/v1, got: ${value}`
  if (!URL.canParse(value.trim())) throw new UsageError(rule)
  const url = new URL(value.trim())
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '' || /[?#]/.test(value))
    throw new UsageError(rule)
  if (url.username !== '' || url.password !== '')
    throw new UsageError('--url must not hold credentials: pass the key with --key or LOADTEST_API_KEY.')
  return `${url.origin}${url.pathname}`.replace(/\/+$/, '').replace(/\/v1$/, '')
}

/** --key, else LOADTEST_API_KEY, else OPENAI_API_KEY; an empty one is a mistake, not "no key". */
function apiKey(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): string | null {
  if (flag !== undefined) {
    if (flag.trim() === '') throw new UsageError('--key is empty. Leave it out to send no key, or set LOADTEST_API_KEY.')
    return flag.trim()
  }
  for (const name of ['LOADTEST_API_KEY', 'OPENAI_API_KEY']) {
    const value = env[name]?.trim()
    if (value) return value
  }
  return null
}

function nonEmpty(flag: string, value: string | undefined): string | undefined {
  if (value !== undefined && value.trim() === '') throw new UsageError(`${flag} is empty.`)
  return value
}
