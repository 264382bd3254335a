// A vLLM started without `--reasoning-parser` sends DeepSeek-R1's reasoning inside `content`:
// the chat template ends the prompt with `<think>\n`, so the output is the reasoning, `</think>`,
// then the answer. The gateway splits it itself, so clients get `reasoning_content` whatever the
// backend's flags. It works on the stream as it comes: text is held back only while it could be
// the start of the tag (at most 7 characters), never a whole event.

const THINK_END = '</think>'
const THINK_START = '<think>'

export interface SplitText {
  reasoning: string
  content: string
}

/** One choice's reasoning/answer split, fed each content delta in order. */
export class ThinkSplitter {
  #inReasoning = true
  #atStart = true
  /** The end of the reasoning seen so far that may be the first characters of `</think>`. */
  #held = ''

  split(text: string): SplitText {
    if (!this.#inReasoning) return { reasoning: '', content: text }
    let pending = this.#held + text
    this.#held = ''
    if (this.#atStart) {
      // A template that does not add `<think>` leaves it to the model: it is markup, not text.
      if (THINK_START.startsWith(pending)) {
        this.#held = pending
        return { reasoning: '', content: '' }
      }
      this.#atStart = false
      if (pending.startsWith(THINK_START)) pending = pending.slice(THINK_START.length)
    }
    const end = pending.indexOf(THINK_END)
    if (end >= 0) {
      this.#inReasoning = false
      return { reasoning: pending.slice(0, end), content: pending.slice(end + THINK_END.length) }
    }
    const keep = partialTagLength(pending)
    this.#held = pending.slice(pending.length - keep)
    return { reasoning: pending.slice(0, pending.length - keep), content: '' }
  }

  /** What is still held when the choice finishes: it was reasoning after all. */
  flush(): string {
    const held = this.#held
    this.#held = ''
    return held
  }
}

/** The length of the longest end of `text` that is a proper beginning of `</think>`. */
function partialTagLength(text: string): number {
  for (let length = Math.min(THINK_END.length - 1, text.length); length > 0; length--) {
    if (THINK_END.startsWith(text.slice(text.length - length))) return length
  }
  return 0
}
