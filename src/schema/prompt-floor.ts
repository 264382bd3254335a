// A lower bound on the prompt tokens vLLM v0.11.0 counts for a chat body sent to
// DeepSeek-R1-Distill-Qwen, without the tokenizer (not in the Worker bundle). Unlike the estimate
// (token-estimate.ts), which is off both ways, this bound is never above the exact count, so a
// prompt at or over it certainly does not fit and can be refused without asking a backend.
//
// The R1-Distill chat template (its tokenizer_config.json, applied by vLLM with
// add_generation_prompt): BOS + the last system message's text, `<｜User｜>` + text per user turn,
// `<｜Assistant｜>` + the text after the last `</think>` + `<｜end▁of▁sentence｜>` per assistant turn,
// and `<｜Assistant｜><think>\n` at the end. Those added tokens are one token each, counted exactly.
// Hugging Face tokenizers split the rendered text at added tokens first, so every text between two
// of them is tokenized on its own (a "piece"), and a piece's bound adds up with the others.
//
// A piece's text counts only what Qwen2's tokenizer certainly splits (tokenizer.json: NFC, then the
// pre-tokenizer regex `(?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|...`,
// then byte-level BPE, which never merges across pre-tokens):
//   - an ASCII digit is a pre-token of its own, so exactly one token;
//   - each pre-token holds letters of at most one maximal run of letters (\p{L}+), so every run
//     is a token of its own at least. Only ASCII is read: ASCII letters are letters, other ASCII
//     characters are not, and anything else may be either, so it joins the run it touches (two
//     runs the bound tells apart are certainly apart, whatever the Unicode version);
//   - every token is at most LONGEST_TOKEN_BYTES bytes, so the bytes of the text that are not
//     digits take at least bytes / LONGEST_TOKEN_BYTES tokens. Only ASCII bytes count: NFC can
//     compose other characters into fewer bytes, never an ASCII character into none;
//   - a text that is not empty is at least one token.
// A client's text may itself hold an added token (`<｜User｜>`, `<|fim_prefix|>`, `<tool_call>`),
// which is one token however many runs it looks like. Every added token of this tokenizer is `<`,
// some characters that are neither `<`, `>` nor whitespace and include an ASCII letter, then `>`; so
// such a span counts as one token, whatever is inside.
//
// NFC, for the record: it never turns ASCII into non-ASCII except `<`, `=`, `>` followed by U+0338,
// which become symbols (still not letters), and ASCII letters followed by combining marks, which
// become letters; so the runs, digits and ASCII bytes read from the text the client sent hold for
// the normalized text vLLM tokenizes.

/** UTF-8 bytes of the vocabulary's longest token (Qwen2.5's BPE: 128 spaces), pinned by test/schema-node/prompt-floor-vocab.test.ts. */
export const LONGEST_TOKEN_BYTES = 128

/** Added tokens the template writes per prompt with add_generation_prompt: BOS, then `<｜Assistant｜>`, `<think>`, and "\n" (its own piece). */
const PROMPT_TOKENS = 1
const GENERATION_PROMPT_TOKENS = 3
const THINK_END = '</think>'

/** The messages as the chat body sends them (the schema's, or the gateway's after its prompt rules). */
export interface FloorMessage {
  role: string
  content?: string | readonly { text: string }[] | null
}

export interface FloorOptions {
  /** vLLM's add_generation_prompt (default true). */
  addGenerationPrompt?: boolean | undefined
  /** vLLM's continue_final_message (default false): the final message is left open. */
  continueFinalMessage?: boolean | undefined
}

/**
 * At most the prompt tokens vLLM counts for `messages` rendered by the R1-Distill template. Pure,
 * one pass over the text. A message's `name` and reasoning_content are not rendered; an assistant
 * message without content may take the template's tool-call branch, which renders nothing here.
 */
export function promptTokenFloor(messages: readonly FloorMessage[], options: FloorOptions = {}): number {
  const open = options.continueFinalMessage === true
  const last = messages.length - 1
  // vLLM (transformers) cuts the rendered prompt after the last occurrence of the final message's
  // text. A final system message is rendered at the start, so the cut may drop every turn.
  if (open && messages[last]?.role === 'system') return PROMPT_TOKENS
  let total = PROMPT_TOKENS
  let system: FloorMessage | undefined
  for (const [index, message] of messages.entries()) {
    if (message.role === 'system') system = message
    else if (open && index === last) {
      // Left open: its role token stays; its text is what the cut keeps (not counted), no EOS.
      if (message.role === 'user' || message.role === 'assistant') total += 1
    } else if (message.role === 'user') total += 1 + textTokenFloor(contentText(message.content))
    else if (message.role === 'assistant' && message.content != null) total += 2 + textTokenFloor(answerText(message.content))
  }
  if (system) total += textTokenFloor(contentText(system.content))
  if (options.addGenerationPrompt !== false && !open) total += GENERATION_PROMPT_TOKENS
  return total
}

/** At most the tokens of one piece of text between added tokens (see the top of this file). Pure. */
export function textTokenFloor(text: string): number {
  if (text === '') return 0
  const scan = new PieceScan()
  for (let index = 0; index < text.length; index++) scan.read(text.charCodeAt(index))
  return scan.floor()
}

/** vLLM joins text parts with "\n" for a template that reads content as a string (chat_utils.py). */
function contentText(content: FloorMessage['content']): string {
  if (content == null) return ''
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n')
}

/** The template keeps an assistant turn's text after its last `</think>` (Python's split(...)[-1]). */
function answerText(content: NonNullable<FloorMessage['content']>): string {
  const text = contentText(content)
  const end = text.lastIndexOf(THINK_END)
  return end === -1 ? text : text.slice(end + THINK_END.length)
}

const isAsciiLetter = (code: number) => (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a)
const isAsciiDigit = (code: number) => code >= 0x30 && code <= 0x39
// ASCII whitespace: no added token holds any, and NFC keeps it, so it ends a candidate span.
const isAsciiSpace = (code: number) => code === 0x20 || (code >= 0x09 && code <= 0x0d)
const LESS = 0x3c
const GREATER = 0x3e

/**
 * Counts one piece, code unit by code unit (a non-ASCII unit, surrogates included, only extends a
 * run). A `<` opens a candidate span, whose runs and digits are held apart until it ends: closed by
 * `>` with a letter inside, it may be one added token and counts as one; broken by whitespace,
 * another `<` or the end of the text, it is ordinary text and its counts join the others.
 */
class PieceScan {
  #asciiBytes = 0
  #digits = 0
  #runs = 0
  #spans = 0
  #inRun = false
  #runHasLetter = false
  #inSpan = false
  #spanDigits = 0
  #spanRuns = 0

  read(code: number): void {
    if (code >= 0x80) {
      this.#inRun = true
      return
    }
    this.#asciiBytes++
    if (isAsciiLetter(code)) {
      this.#inRun = true
      this.#runHasLetter = true
      return
    }
    this.#endRun()
    if (isAsciiDigit(code)) {
      if (this.#inSpan) this.#spanDigits++
      else this.#digits++
    } else if (code === LESS) {
      this.#breakSpan()
      this.#inSpan = true
    } else if (code === GREATER && this.#inSpan) {
      // A span without a letter is no added token: its digits are ordinary digits.
      if (this.#spanRuns > 0) this.#spans++
      else this.#digits += this.#spanDigits
      this.#inSpan = false
      this.#spanDigits = 0
      this.#spanRuns = 0
    } else if (isAsciiSpace(code)) this.#breakSpan()
  }

  floor(): number {
    this.#endRun()
    this.#breakSpan()
    const pieces = this.#runs + this.#spans
    const byBytes = Math.ceil((this.#asciiBytes - this.#digits) / LONGEST_TOKEN_BYTES)
    // Digit tokens are one byte each and apart from the rest, so they add to the rest's bound.
    return Math.max(1, this.#digits + Math.max(pieces, byBytes))
  }

  #endRun(): void {
    if (this.#inRun && this.#runHasLetter) {
      if (this.#inSpan) this.#spanRuns++
      else this.#runs++
    }
    this.#inRun = false
    this.#runHasLetter = false
  }

  /** The open span, if any, was no added token: what it held counts as ordinary text. */
  #breakSpan(): void {
    if (!this.#inSpan) return
    this.#runs += this.#spanRuns
    this.#digits += this.#spanDigits
    this.#inSpan = false
    this.#spanDigits = 0
    this.#spanRuns = 0
  }
}
