// npm run loadtest: the command line to an exit code. 0 every request succeeded; 1 a request
// failed (the full report is still printed, so a script sees both) or the test could not start
// (no model found, the key refused when listing models); 2 bad command line (usage on stderr).
import { runCli, type Output } from '../cli-support.ts'
import { firstModel, streamChat, type Fetch } from './client.ts'
import { parseCommand, USAGE, type Settings } from './options.ts'
import { progressBar, type ProgressStream } from './progress.ts'
import { buildReport, formatHuman, formatJson } from './report.ts'
import { runLoad } from './runner.ts'

export interface CliDeps {
  out: Output
  /** Where the progress bar goes when it is a TTY (process.stderr). */
  progress: ProgressStream
  /** Where --key falls back to LOADTEST_API_KEY and OPENAI_API_KEY. */
  env: Readonly<Record<string, string | undefined>>
  fetch: Fetch
}

const defaults: CliDeps = { out: console, progress: process.stderr, env: process.env, fetch: (url, init) => fetch(url, init) }

export async function runLoadtestCli(argv: readonly string[], deps: Partial<CliDeps> = {}): Promise<number> {
  const { progress, env, fetch } = { ...defaults, ...deps }
  const out = redacting(deps.out ?? defaults.out, keysIn(argv, env))
  return runCli({
    parse: () => parseCommand(argv, env),
    execute: (command) => execute(command.settings, { out, progress, env, fetch }),
    usage: USAGE,
    out,
  })
}

async function execute(settings: Settings, { out, progress, fetch }: CliDeps): Promise<number> {
  const model = settings.model ?? (await firstModel(settings.baseUrl, settings.key, settings.timeoutMs, fetch))
  const target = { ...settings, model }
  const bar = progressBar(progress, !settings.json)
  let runs
  try {
    runs = await runLoad(
      settings,
      () => streamChat(target, fetch),
      (state) => bar.update(state),
    )
  } finally {
    bar.finish()
  }
  const report = buildReport(settings, model, runs)
  out.log(settings.json ? formatJson(report) : formatHuman(report))
  if (report.errors.total === 0) return 0
  // On stderr too, so that --json users see why the exit code is 1 without reading the document.
  out.error(`${report.errors.total} of ${settings.requests} requests failed.`)
  return 1
}

/**
 * Every key the command line or the environment could hold, parsed or not: a message that echoes
 * one (an endpoint's error body, a usage error quoting an argument) must not print it. Strings under
 * 4 characters are left alone: replacing them would garble the report, and no real key is that short.
 */
function keysIn(argv: readonly string[], env: CliDeps['env']): string[] {
  const keys = [env.LOADTEST_API_KEY, env.OPENAI_API_KEY]
  argv.forEach((arg, index) => {
    if (arg === '--key') keys.push(argv[index + 1])
    else if (arg.startsWith('--key=')) keys.push(arg.slice('--key='.length))
  })
  return keys.map((key) => key?.trim()).filter((key): key is string => key !== undefined && key.length >= 4)
}

function redacting(out: Output, keys: readonly string[]): Output {
  const redact = (text: string) => keys.reduce((result, key) => result.replaceAll(key, '[redacted]'), text)
  return { log: (text) => out.log(redact(text)), error: (text) => out.error(redact(text)) }
}
