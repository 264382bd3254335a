// node bench/compare.ts <before> <after>: two npm run bench results (names under bench/results/,
// without .json) figure by figure. A figure counts as worse only when the after median lies beyond
// the before run's own spread on the bad side (above its slowest run, or below its lowest
// throughput), since on a shared machine a single median moves by that much from noise alone.
// Prints a markdown table; writes bench/results/<before>-vs-<after>.md; exits 1 if any is worse.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../scripts/processes.ts'
import { TARGET_NAMES, type LevelResult, type Summary } from './report.ts'

const FIELDS = ['ttfe_p50', 'ttfe_p99', 'lag_p50', 'lag_p99', 'cpu_us_per_event'] as const satisfies readonly (keyof LevelResult)[]

interface Figure {
  label: string
  before: number
  range: [number, number]
  after: number
  afterRange: [number, number]
  /** true when a larger value is better (throughput). */
  higherIsBetter: boolean
}

function load(name: string): Summary {
  if (!/^[\w.-]+$/.test(name)) throw new Error(`not a results name: ${name}`)
  return JSON.parse(readFileSync(join(ROOT, 'bench/results', `${name}.json`), 'utf8')) as Summary
}

function figures(before: Summary, after: Summary): Figure[] {
  const list: Figure[] = []
  for (const level of before.levels) {
    const other = after.levels.find((candidate) => candidate.concurrency === level.concurrency)
    if (!other) continue
    for (const name of TARGET_NAMES) {
      const row = level.targets[name]
      const afterRow = other.targets[name]
      // A target one of the results predates (gateway-distant before issue 15) is not compared.
      if (!row || !afterRow) continue
      for (const field of FIELDS) {
        list.push({
          label: `c=${level.concurrency} ${name} ${field}`,
          before: row[field],
          range: row.spread[field],
          after: afterRow[field],
          afterRange: afterRow.spread[field],
          higherIsBetter: false,
        })
      }
    }
  }
  for (const [name, row] of Object.entries(before.throughput)) {
    const other = after.throughput[name]
    if (other)
      list.push({
        label: `throughput ${name} events/s`,
        before: row.events_per_s,
        range: row.spread.events_per_s,
        after: other.events_per_s,
        afterRange: other.spread.events_per_s,
        higherIsBetter: true,
      })
  }
  return list
}

function verdict(figure: Figure): 'worse' | 'better' | 'within spread' {
  const [min, max] = figure.range
  if (figure.higherIsBetter ? figure.after < min : figure.after > max) return 'worse'
  if (figure.higherIsBetter ? figure.after > max : figure.after < min) return 'better'
  return 'within spread'
}

function main(): void {
  const [beforeName, afterName] = process.argv.slice(2)
  if (!beforeName || !afterName) throw new Error('usage: node bench/compare.ts <before> <after> (names under bench/results/)')
  const list = figures(load(beforeName), load(afterName))
  const lines = [
    `# ${beforeName} vs ${afterName}`,
    '',
    '| figure | before (median) | before range | after (median) | after range | verdict |',
    '|---|---|---|---|---|---|',
  ]
  for (const figure of list)
    lines.push(
      `| ${figure.label} | ${figure.before} | ${figure.range[0]}–${figure.range[1]} | ${figure.after} | ${figure.afterRange[0]}–${figure.afterRange[1]} | ${verdict(figure)} |`,
    )
  const worse = list.filter((figure) => verdict(figure) === 'worse')
  lines.push(
    '',
    worse.length === 0
      ? "No figure worse beyond the before run's spread."
      : `Worse beyond the spread: ${worse.map((figure) => figure.label).join(', ')}.`,
  )
  writeFileSync(join(ROOT, 'bench/results', `${beforeName}-vs-${afterName}.md`), `${lines.join('\n')}\n`)
  console.log(lines.join('\n'))
  if (worse.length > 0) process.exitCode = 1
}

main()
