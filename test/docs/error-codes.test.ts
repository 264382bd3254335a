import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../../src/error-codes.ts'

const API_DOC = fileURLToPath(new URL('../../docs/api.md', import.meta.url))

/** The codes of docs/api.md's error table: its rows whose first cell is one `code`. */
function documentedCodes(markdown: string): string[] {
  const heading = markdown.indexOf('| code | status | meaning |')
  if (heading === -1) return []
  const rows: string[] = []
  for (const line of markdown.slice(heading).split('\n').slice(2)) {
    const match = /^\| `([a-z_]+)` \| [^|]+ \| [^|]+ \|$/.exec(line)
    if (!match?.[1]) break
    rows.push(match[1])
  }
  return rows
}

describe('the error codes in docs/api.md', () => {
  const documented = documentedCodes(readFileSync(API_DOC, 'utf8'))

  it('list every code ApiError can carry, and no other', () => {
    expect([...documented].sort()).toEqual([...ERROR_CODES].sort())
  })

  it('list each code once', () => {
    expect(new Set(documented).size).toBe(documented.length)
  })
})
