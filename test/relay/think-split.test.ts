import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ThinkSplitter } from '../../src/relay/think-split.ts'

/** Feeds the pieces in order, as content deltas, and joins what comes out of each side. */
function feed(pieces: readonly string[]): { reasoning: string; content: string; perPiece: { reasoning: string; content: string }[] } {
  const splitter = new ThinkSplitter()
  const perPiece = pieces.map((piece) => splitter.split(piece))
  const reasoning = perPiece.map((part) => part.reasoning).join('') + splitter.flush()
  return { reasoning, content: perPiece.map((part) => part.content).join(''), perPiece }
}

describe('ThinkSplitter (a backend without --reasoning-parser)', () => {
  it('sends the text before </think> as reasoning and the text after it as the answer', () => {
    expect(feed(['Okay, 2+2', ' is 4.</think>\n\nThe answer', ' is 4.'])).toMatchObject({
      reasoning: 'Okay, 2+2 is 4.',
      content: '\n\nThe answer is 4.',
    })
  })

  it('passes reasoning on in the delta it arrived in, holding back nothing that cannot be the tag', () => {
    const { perPiece } = feed(['Okay', ' so'])
    expect(perPiece).toEqual([
      { reasoning: 'Okay', content: '' },
      { reasoning: ' so', content: '' },
    ])
  })

  it('finds </think> split across deltas mid-tag, and holds only the possible tag meanwhile', () => {
    const { perPiece, reasoning, content } = feed(['so 4.</th', 'ink>\n\n4'])
    expect(perPiece[0]).toEqual({ reasoning: 'so 4.', content: '' })
    expect(reasoning).toBe('so 4.')
    expect(content).toBe('\n\n4')
  })

  it('gives back held text that turned out not to be the tag', () => {
    expect(feed(['a </', 'b> c</think>d'])).toMatchObject({ reasoning: 'a </b> c', content: 'd' })
  })

  it('treats a stream that never closes its reasoning as all reasoning (cut by max_tokens)', () => {
    expect(feed(['still thinking </thi'])).toMatchObject({ reasoning: 'still thinking </thi', content: '' })
  })

  it('drops a leading <think> the model wrote itself (a template that does not add it), even split', () => {
    expect(feed(['<thi', 'nk>\nOkay</think>Hi'])).toMatchObject({ reasoning: '\nOkay', content: 'Hi' })
  })

  it('keeps a later </think> in the answer as text', () => {
    expect(feed(['r</think>use </think> like this'])).toMatchObject({ reasoning: 'r', content: 'use </think> like this' })
  })

  it('keeps multibyte text whole around the tag', () => {
    expect(feed(['思考😀</', 'think>答案😀'])).toMatchObject({ reasoning: '思考😀', content: '答案😀' })
  })

  it('splits the same way wherever the deltas are cut (property)', () => {
    const text = fc.string({ unit: fc.constantFrom('a', ' ', '<', '/', '>', 't', 'h', 'i', 'n', 'k', '思', '\n'), maxLength: 30 })
    fc.assert(
      fc.property(text, text, fc.array(fc.nat(70), { maxLength: 6 }), (before, after, cuts) => {
        fc.pre(!before.includes('</think>') && !('</think>' + after).startsWith('<think>') && !before.startsWith('<think>'))
        fc.pre(!(before + '</think>').slice(0, 7).startsWith('<think>'))
        const whole = `${before}</think>${after}`
        const points = [...new Set(cuts.map((cut) => cut % (whole.length + 1)))].sort((a, b) => a - b)
        const pieces = [0, ...points].map((start, i, all) => whole.slice(start, all[i + 1] ?? whole.length))
        expect(feed(pieces)).toMatchObject({ reasoning: before, content: after })
      }),
      { numRuns: 500 },
    )
  })
})
