// npm test: the suite's vitest projects, worker and node at once, each in its own vitest process,
// then the load project alone (test/vitest.config.ts: a thousand clients at once measure what the
// machine does under their own load, not under the other projects'). One vitest
// run takes its projects one after the other (the worker project runs its files one at a time, in
// a group of its own: test/vitest.config.ts), and the worker project mostly waits on its emulator
// while the node project mostly computes, so side by side they take about the longer one's time
// instead of the sum (docs/architecture.md, Tests in layers, has the figures).
//
// Arguments go to all three (a file path, -t NAME, a reporter). A file that only one project holds
// is run by that one; the others find nothing to run, which is not a failure. Each line of output is
// prefixed with its project; `--outputFile.json=F` becomes one file per project, F with
// `.worker`, `.node` or `.load` before its extension. The exit code is the first failure's, else 0.
import { spawn, type ChildProcess } from 'node:child_process'
import { setPriority } from 'node:os'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { ROOT } from './processes.ts'

/** Run side by side. */
const SIDE_BY_SIDE = ['worker', 'node'] as const
/** Run after them, alone. */
const ALONE = 'load'
type Project = (typeof SIDE_BY_SIDE)[number] | typeof ALONE

const VITEST = join(ROOT, 'node_modules/vitest/vitest.mjs')
/** Unix niceness of the node project (0 is normal, 19 the lowest priority). */
const NODE_PROJECT_NICENESS = 10

/** The arguments for one project: a JSON report file of its own. */
function argsFor(project: Project, args: readonly string[]): string[] {
  return args.map((arg) => {
    const match = /^(--outputFile(?:\.json)?=)(.+?)(\.json)?$/.exec(arg)
    return match ? `${match[1]}${match[2]}.${project}${match[3] ?? ''}` : arg
  })
}

function run(project: Project, args: readonly string[]): Promise<number> {
  const child = spawn(
    process.execPath,
    [VITEST, 'run', '--config', 'test/vitest.config.ts', '--project', project, '--passWithNoTests', ...argsFor(project, args)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: process.stdout.isTTY ? '1' : '0' } },
  )
  // The worker project's tests time a relay against its emulator and count what a busy CPU
  // delays; the node project's (browsers, whole stacks, CLIs) only wait on events. So the node
  // project yields the CPU: its process and everything it starts run at a lower priority.
  if (project === 'node' && child.pid !== undefined) setPriority(child.pid, NODE_PROJECT_NICENESS)
  const label = `${project.padEnd(6)}| `
  for (const [stream, out] of [
    [child.stdout, process.stdout],
    [child.stderr, process.stderr],
  ] as const) {
    createInterface({ input: stream }).on('line', (line) => out.write(`${label}${line}\n`))
  }
  return exitCodeOf(child)
}

/** Asked for one project by name: that vitest run alone, as asked. */
function runAsked(args: readonly string[]): Promise<number> {
  return exitCodeOf(spawn(process.execPath, [VITEST, 'run', '--config', 'test/vitest.config.ts', ...args], { cwd: ROOT, stdio: 'inherit' }))
}

/** A child's exit code; killed by a signal counts as 1. */
function exitCodeOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0))))
}

const args = process.argv.slice(2)
const named = args.some((arg) => arg === '--project' || arg.startsWith('--project='))

const codes = named
  ? [await runAsked(args)]
  : [...(await Promise.all(SIDE_BY_SIDE.map((project) => run(project, args)))), await run(ALONE, args)]
process.exitCode = codes.find((code) => code !== 0) ?? 0
