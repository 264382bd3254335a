// CPU time of a process tree as the operating system accounts it (Linux /proc), so the benchmark
// can report what each target's own process spends per relayed event. Wall-clock figures on a
// shared machine move with whatever else runs; CPU time charged to one process moves far less.
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on almost every Linux). */
const CLK_TCK = readClockTicks()

function readClockTicks(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : 100
  } catch {
    return 100
  }
}

interface ProcStat {
  pid: number
  comm: string
  ppid: number
  /** utime + stime + cutime + cstime, in clock ticks: the process's own CPU and its reaped children's. */
  ticks: number
}

function readStat(pid: number): ProcStat | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined // gone between listing /proc and reading it
  }
  // comm is in parentheses and may itself hold spaces or ')': the fields start after the last ')'.
  const close = text.lastIndexOf(')')
  const comm = text.slice(text.indexOf('(') + 1, close)
  const fields = text.slice(close + 2).split(' ')
  // fields[0] is field 3 of proc(5) (state): ppid is field 4, utime..cstime are fields 14..17.
  const field = (n: number) => Number(fields[n - 3])
  return { pid, comm, ppid: field(4), ticks: field(14) + field(15) + field(16) + field(17) }
}

function allProcesses(): ProcStat[] {
  const stats: ProcStat[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = readStat(Number(entry))
    if (stat) stats.push(stat)
  }
  return stats
}

/** The live direct children of `parent` whose command name is `comm`. */
export function childPids(parent: number, comm: string): number[] {
  return allProcesses()
    .filter((stat) => stat.ppid === parent && stat.comm === comm)
    .map((stat) => stat.pid)
}

/**
 * CPU seconds charged so far to the processes `roots` and all their live descendants (threads
 * included: a process's utime/stime sum over its threads, exited ones too). A descendant reaped in
 * between moves its time into its parent's cutime/cstime, so differences stay consistent.
 */
export function treeCpuSeconds(roots: readonly number[]): number {
  const stats = allProcesses()
  const children = new Map<number, ProcStat[]>()
  for (const stat of stats) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat])
  const byPid = new Map(stats.map((stat) => [stat.pid, stat]))
  let ticks = 0
  const seen = new Set<number>()
  const queue = roots.filter((pid) => byPid.has(pid))
  while (queue.length > 0) {
    const pid = queue.pop() as number
    if (seen.has(pid)) continue
    seen.add(pid)
    ticks += byPid.get(pid)?.ticks ?? 0
    for (const child of children.get(pid) ?? []) queue.push(child.pid)
  }
  return ticks / CLK_TCK
}

/**
 * Runs `start` (which must spawn exactly one new `comm` child of this process, as Miniflare does
 * with workerd) and returns its result with that child's pid. Calls must not overlap.
 */
export async function withNewChild<T>(comm: string, start: () => Promise<T>): Promise<{ value: T; pid: number }> {
  const before = new Set(childPids(process.pid, comm))
  const value = await start()
  const added = childPids(process.pid, comm).filter((pid) => !before.has(pid))
  if (added.length !== 1) throw new Error(`expected one new ${comm} process, found ${added.length}`)
  return { value, pid: added[0] as number }
}
