import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { circles, importGraph } from './import-graph.ts'

const src = fileURLToPath(new URL('../../src', import.meta.url))

describe("src/'s import graph", () => {
  it('has no circle: every module can be read, tested and changed from its imports down', () => {
    expect(circles(importGraph(src))).toEqual([])
  })

  it('finds a circle when there is one (the check can fail)', () => {
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ])
    expect(circles(graph)).toEqual([['a.ts', 'b.ts', 'c.ts']])
  })
})
