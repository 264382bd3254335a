// What the project's command-line tools (npm run keys, npm run fleet) share: strict option
// parsing where a bad command line is a UsageError, the per-command option check, and the run
// wrapper that turns a command line into an exit code: 0 done (or --help), 1 failed, 2 bad
// command line (the message, then the usage or a one-line pointer to it, on stderr; nothing done).
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'

/** A bad command line: exit 2, with the usage. */
export class UsageError extends Error {}

export interface Output {
  log(text: string): void
  error(text: string): void
}

/** The option values parseArgs gives for `options`. */
export type OptionValues<Options extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ options: Options; allowPositionals: true }>
>['values']

/** parseArgs with unknown options and missing values as UsageErrors. */
export function parseStrict<Options extends ParseArgsOptionsConfig>(
  argv: readonly string[],
  options: Options,
): { values: OptionValues<Options>; positionals: string[] } {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals: true, strict: true })
  } catch (error) {
    // parseArgs throws TypeErrors with a readable message for unknown options and missing values.
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
}

/** The command line of a tool whose first positional names the command: --help, or the command and the rest. */
export type CommandLine<Name extends string, Values> = { name: 'help' } | { name: Name; values: Values; rest: string[] }

/** Parses `argv` and checks the command is one of `accepts` and takes every option given. `options` has a boolean --help. */
export function parseCommandLine<Options extends ParseArgsOptionsConfig, Name extends string>(
  argv: readonly string[],
  options: Options,
  accepts: Readonly<Record<Name, readonly string[]>>,
): CommandLine<Name, OptionValues<Options>> {
  const { values, positionals } = parseStrict(argv, options)
  if ((values as { help?: boolean }).help) return { name: 'help' }
  const [name, ...rest] = positionals
  if (name === undefined) throw new UsageError('Missing command.')
  if (!Object.hasOwn(accepts, name)) throw new UsageError(`Unknown command: ${name}`)
  const command = name as Name
  rejectForeignOptions(command, accepts[command], values)
  return { name: command, values, rest }
}

/** `accepted`: the options `command` takes; --help goes with any. */
export function rejectForeignOptions(command: string, accepted: readonly string[], values: object): void {
  const allowed = new Set<string>([...accepted, 'help'])
  const foreign = Object.keys(values).filter((option) => !allowed.has(option))
  if (foreign.length > 0) throw new UsageError(`${command} does not take --${foreign.join(', --')}`)
}

/** For a command that takes no positional argument. */
export function noArguments(rest: readonly string[]): void {
  if (rest.length > 0) throw new UsageError(`Unexpected argument: ${rest[0]}`)
}

/** The one id a command takes; `hint` says what one looks like, such as `a key id (key_...)`. */
export function onlyId(command: string, rest: readonly string[], hint: string): string {
  const [id, extra] = rest
  if (id === undefined) throw new UsageError(`${command} needs ${hint}.`)
  if (extra !== undefined) throw new UsageError(`Unexpected argument: ${extra}`)
  return id
}

export interface CliRun<Command extends { name: string }> {
  /** Throws a UsageError for a bad command line; any other error propagates. */
  parse: () => Command
  /** Resolves to the exit code; a rejection is printed and exits 1. */
  execute: (command: Exclude<Command, { name: 'help' }>) => Promise<number>
  usage: string
  /**
   * One line saying where the usage is (such as `Run npm run keys -- --help for the commands.`).
   * With it, a bad command line prints only its error and this line, so the error is not lost
   * above the whole usage; without it, the error and then the usage.
   */
  usageHint?: string
  out: Output
}

/**
 * The exit code of one command line: 2 for a UsageError (with the usage, or the usage hint), 0 for
 * help, else what execute gives, 1 if it throws.
 */
export async function runCli<Command extends { name: string }>({
  parse,
  execute,
  usage,
  usageHint,
  out,
}: CliRun<Command>): Promise<number> {
  let command: Command
  try {
    command = parse()
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    out.error(usageHint === undefined ? `${error.message}\n\n${usage}` : `${error.message}\n${usageHint}`)
    return 2
  }
  if (command.name === 'help') {
    out.log(usage)
    return 0
  }
  try {
    return await execute(command as Exclude<Command, { name: 'help' }>)
  } catch (error) {
    out.error(error instanceof Error ? error.message : String(error))
    return 1
  }
}

/** Rows as aligned columns, two spaces apart, no trailing spaces (the CLIs' tables). */
export function columns(rows: readonly string[][]): string {
  const widths = (rows[0] ?? []).map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)))
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}
