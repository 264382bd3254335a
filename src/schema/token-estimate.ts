// Prompt token estimate for DeepSeek-R1-Distill-Qwen (Qwen2's byte-level BPE, 151k vocabulary),
// without the tokenizer: it is not in the Worker bundle (several MB) and cannot be fetched.
//
// Per character class, from how Qwen2's BPE splits text:
//   ASCII letters        1 token per 4 (a common English word is one token of ~4-5 letters)
//   digits               1 token each (Qwen2 splits numbers into single digits)
//   ASCII punctuation    1 token per 2 (often merged with a neighbour, sometimes alone)
//   spaces, newlines     free (merged into the following word)
//   CJK ideographs/kana  1 token each (real rate ~0.6-1.0: counted high on purpose)
//   other BMP letters    1 token per 2 (accented Latin, Cyrillic, Greek: 2-byte UTF-8)
//   astral (emoji, ...)  2 tokens each (4-byte UTF-8)
// plus 4 tokens of chat template per message and 3 for the prompt's start and end.
//
// How far off: for English prose about -10% to +25%; for code and JSON it can undercount by
// up to ~30% (long runs of symbols); for CJK, numbers and emoji it overcounts. Because it is off
// both ways, it only sizes the rate-limit reservation (settled with vLLM's exact count): it never
// refuses a prompt and never sets max_tokens (src/schema/context-budget.ts).

const TEMPLATE_TOKENS_PER_MESSAGE = 4
const TEMPLATE_TOKENS_PER_PROMPT = 3

export function estimateTextTokens(text: string): number {
  let letters = 0
  let units = 0
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0
    if ((code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a)) letters++
    else if (code >= 0x30 && code <= 0x39) units += 2
    else if (code <= 0x20) continue
    else if (code < 0x80) units += 1
    else if (code > 0xffff) units += 4
    else if (isCjk(code)) units += 2
    else units += 1
  }
  // `units` counts half tokens so every class above stays an integer.
  return Math.ceil(letters / 4 + units / 2)
}

export function estimatePromptTokens(texts: readonly string[]): number {
  let total = TEMPLATE_TOKENS_PER_PROMPT
  for (const text of texts) total += TEMPLATE_TOKENS_PER_MESSAGE + estimateTextTokens(text)
  return total
}

function isCjk(code: number): boolean {
  return (
    (code >= 0x3040 && code <= 0x30ff) ||
    (code >= 0x3400 && code <= 0x9fff) ||
    (code >= 0xac00 && code <= 0xd7af) ||
    (code >= 0xf900 && code <= 0xfaff)
  )
}
