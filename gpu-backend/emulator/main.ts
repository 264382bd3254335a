// CLI: node gpu-backend/emulator/main.ts --port 8001 --served-model-name NAME --api-key KEY --reasoning-parser deepseek_r1
// Flags mirror `vllm serve` where they overlap; the rest are emulator-only.

import { parseArgs } from 'node:util'
import { DEFAULT_MODEL, OptionsError, SCHEDULING_POLICIES, type EmulatorOptions, type SchedulingPolicy } from './options.ts'
import { startEmulator } from './server.ts'
import { loadTokenizer } from './tokenizer.ts'

const USAGE = `usage: node gpu-backend/emulator/main.ts [flags]

vLLM flags:
  --host HOST                    listen address (default 127.0.0.1)
  --port PORT                    listen port (default 8000)
  --model NAME                   model path (default ${DEFAULT_MODEL})
  --served-model-name NAME       name clients use (default: the model)
  --max-model-len N              context length (default 4096)
  --api-key KEY                  require "Authorization: Bearer KEY" under /v1 (or env VLLM_API_KEY)
  --reasoning-parser deepseek_r1 stream reasoning apart from content (default: none)
  --max-num-seqs N               generations running at once; the rest wait in the queue (default: no limit)
  --scheduling-policy P          the queue's order: fcfs (arrival, default) or priority (a request's
                                 priority, lower first, then arrival), as vLLM's flag
  --enable-server-load-tracking  GET /load counts generation requests in flight (default: always 0)
  --enable-request-id-headers    every response carries X-Request-Id (the request's, or a new one)
emulator flags:
  --vllm-version 0.20.2|0.11.0   the vLLM release emulated (default 0.20.2)
  --reasoning-field reasoning_content|both|reasoning|reasoning_null   (default: the release's,
                                 reasoning at 0.20.2, reasoning_content at 0.11.0)
  --token-ids-fields true|false  add prompt_token_ids/token_ids nulls (default true)
  --error-format current|legacy  (default current)
  --ttft-ms N  --itl-ms N        time to first token, between tokens (default 40, 8)
  --reasoning-tokens N  --content-tokens N              (default 24, 16)
  --seed N                       text seed (default 1)
  --record-event-times           keep SSE send times for GET /emulator/event-times
  --fault F                      process-wide fault: none, hang, refuse:STATUS,
                                 stall_after:N, die_after:N, error_after:N, malformed_after:N, dead_after:N
  --merge-tokens K               after the first delta, K engine steps per delta (default 1)
  --dead-shutdown-ms N           port closes N ms after engine death (default 5000)
  --preprocess-ms-per-token X    X ms per prompt token of chat template + tokenizer before the
                                 response headers; the render's 5% holds the whole server (default 0)
  --api-server-lag-ms N          every request but /emulator/* is handled N ms late, as a lagging
                                 API-server event loop (default 0)
load model (README "Load model"):
  --prefill-ms-per-token X       ttft += X per prompt token not in the prefix cache (default 0)
  --batch-itl-ms-per-seq Y       itl += Y per other running generation, at each step (default 0)
  --prefix-cache-tokens N        prompt tokens the prefix cache holds, LRU (default 200000)
  --kv-cache-tokens N            capacity for vllm:kv_cache_usage_perc (default: running / 64)
  --help`

const FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  model: { type: 'string' },
  'served-model-name': { type: 'string' },
  'max-model-len': { type: 'string' },
  'api-key': { type: 'string' },
  'reasoning-parser': { type: 'string' },
  'reasoning-field': { type: 'string' },
  'token-ids-fields': { type: 'string' },
  'error-format': { type: 'string' },
  'ttft-ms': { type: 'string' },
  'itl-ms': { type: 'string' },
  'reasoning-tokens': { type: 'string' },
  'content-tokens': { type: 'string' },
  seed: { type: 'string' },
  'record-event-times': { type: 'boolean' },
  fault: { type: 'string' },
  'max-num-seqs': { type: 'string' },
  'scheduling-policy': { type: 'string' },
  'prefill-ms-per-token': { type: 'string' },
  'batch-itl-ms-per-seq': { type: 'string' },
  'prefix-cache-tokens': { type: 'string' },
  'kv-cache-tokens': { type: 'string' },
  'merge-tokens': { type: 'string' },
  'dead-shutdown-ms': { type: 'string' },
  'enable-server-load-tracking': { type: 'boolean' },
  'enable-request-id-headers': { type: 'boolean' },
  'vllm-version': { type: 'string' },
  'preprocess-ms-per-token': { type: 'string' },
  'api-server-lag-ms': { type: 'string' },
  help: { type: 'boolean' },
} as const

class UsageError extends Error {}

function integer(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  if (!/^-?\d+$/.test(text)) throw new UsageError(`--${flag} must be an integer, got "${text}"`)
  return Number(text)
}

function policy(text: string | undefined): SchedulingPolicy | undefined {
  if (text === undefined) return undefined
  const known = SCHEDULING_POLICIES.find((name) => name === text)
  if (known === undefined) throw new UsageError(`--scheduling-policy must be one of ${SCHEDULING_POLICIES.join(', ')}, got "${text}"`)
  return known
}

function decimal(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`--${flag} must be a non-negative number, got "${text}"`)
  return Number(text)
}

function boolean(flag: string, text: string | undefined): boolean | undefined {
  if (text === undefined) return undefined
  if (text !== 'true' && text !== 'false') throw new UsageError(`--${flag} must be true or false, got "${text}"`)
  return text === 'true'
}

/** The options the flags ask for; absent flags are left out so the defaults apply. */
export function optionsFromArgs(args: readonly string[]): Partial<EmulatorOptions> | 'help' {
  const { values } = parseArgs({ args: [...args], options: FLAGS, strict: true, allowPositionals: false })
  if (values.help === true) return 'help'
  const parser = values['reasoning-parser']
  if (parser !== undefined && parser !== 'deepseek_r1')
    throw new UsageError(`--reasoning-parser: only deepseek_r1 is emulated, got "${parser}"`)
  const options: Record<string, unknown> = {
    host: values.host,
    port: integer('port', values.port) ?? 8000,
    model: values.model,
    servedModelName: values['served-model-name'] ?? values.model,
    maxModelLen: integer('max-model-len', values['max-model-len']),
    // Like vLLM, the key may come from VLLM_API_KEY instead, which keeps it out of `ps` output.
    apiKey: values['api-key'] ?? (process.env.VLLM_API_KEY || undefined),
    reasoningParser: parser,
    vllmVersion: values['vllm-version'],
    reasoningField: values['reasoning-field'],
    tokenIdsFields: boolean('token-ids-fields', values['token-ids-fields']),
    errorFormat: values['error-format'],
    ttftMs: integer('ttft-ms', values['ttft-ms']),
    itlMs: integer('itl-ms', values['itl-ms']),
    reasoningTokens: integer('reasoning-tokens', values['reasoning-tokens']),
    contentTokens: integer('content-tokens', values['content-tokens']),
    seed: integer('seed', values.seed),
    recordEventTimes: values['record-event-times'],
    fault: values.fault,
    maxNumSeqs: integer('max-num-seqs', values['max-num-seqs']),
    schedulingPolicy: policy(values['scheduling-policy']),
    prefillMsPerToken: decimal('prefill-ms-per-token', values['prefill-ms-per-token']),
    batchItlMsPerSeq: decimal('batch-itl-ms-per-seq', values['batch-itl-ms-per-seq']),
    prefixCacheTokens: integer('prefix-cache-tokens', values['prefix-cache-tokens']),
    kvCacheTokens: integer('kv-cache-tokens', values['kv-cache-tokens']),
    mergeTokens: integer('merge-tokens', values['merge-tokens']),
    deadShutdownMs: integer('dead-shutdown-ms', values['dead-shutdown-ms']),
    enableServerLoadTracking: values['enable-server-load-tracking'],
    enableRequestIdHeaders: values['enable-request-id-headers'],
    preprocessMsPerToken: decimal('preprocess-ms-per-token', values['preprocess-ms-per-token']),
    apiServerLagMs: integer('api-server-lag-ms', values['api-server-lag-ms']),
  }
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<EmulatorOptions>
}

async function main(): Promise<void> {
  let options: Partial<EmulatorOptions> | 'help'
  try {
    options = optionsFromArgs(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}\n`)
    process.exit(2)
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  await loadTokenizer() // the vocabulary is in memory before the port opens (tokenizer.ts)
  const emulator = await startEmulator(options).catch((error: unknown) => {
    const usage = error instanceof OptionsError ? `\n\n${USAGE}` : ''
    process.stderr.write(`vLLM emulator: ${error instanceof Error ? error.message : String(error)}${usage}\n`)
    process.exit(error instanceof OptionsError ? 2 : 1)
  })
  process.stdout.write(`vLLM emulator listening on ${emulator.url} (model ${emulator.options.servedModelName})\n`)
  const stop = () => {
    emulator.close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

await main()
