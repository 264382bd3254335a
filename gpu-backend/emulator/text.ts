// Deterministic "model output": the same request and seed always give the same tokens,
// so tests can compare runs, yet different prompts give different text.

import { createHash } from 'node:crypto'

/**
 * One generated token. `think_end` is DeepSeek-R1's `</think>`; `eos` is the end-of-sequence
 * token, whose detokenized text is empty (vLLM skips special tokens) but which still counts
 * as a completion token and is what produces the finish chunk with finish_reason "stop".
 */
export type TokenKind = 'reasoning' | 'think_end' | 'content' | 'eos'
/** `id` is what `stop_token_ids` matches: the real id for `</think>` and EOS, a stable stand-in for words. */
export type Token = { kind: TokenKind; text: string; id: number }

/** DeepSeek-R1-Distill-Qwen's tokenizer: `<｜end▁of▁sentence｜>` (EOS) and `</think>`. */
export const EOS_TOKEN_ID = 151643
export const THINK_END_TOKEN_ID = 151649
/** Qwen2's byte-level BPE vocabulary below the added tokens. */
const REGULAR_VOCAB = 151643

/**
 * The emulator's id for a word token: a hash of its text into Qwen2's regular vocabulary. Not the
 * real BPE id (the emulator's words are not BPE tokens), but stable, so a test can stop on a word.
 */
export function tokenIdOf(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32LE(0) % REGULAR_VOCAB
}

function token(kind: TokenKind, text: string): Token {
  const id = kind === 'eos' ? EOS_TOKEN_ID : kind === 'think_end' ? THINK_END_TOKEN_ID : tokenIdOf(text)
  return { kind, text, id }
}

/**
 * The key of choice `index` of a request: choice 0 keeps the request's own key (its text is what
 * n = 1 gives); the others differ, as vLLM seeds child request i with seed + i (parallel_sampling.py).
 */
export function choiceKey(requestKey: string, index: number): string {
  return index === 0 ? requestKey : `${requestKey}\u0000choice ${index}`
}

const REASONING_OPENERS = ['Okay', 'Alright', 'Hmm', 'So', 'Well', 'First']
const REASONING_WORDS = [
  'the',
  'user',
  'is',
  'asking',
  'about',
  'so',
  'I',
  'need',
  'to',
  'think',
  'through',
  'this',
  'carefully',
  'let',
  'me',
  'recall',
  'what',
  'that',
  'means',
  'maybe',
  'then',
  'check',
  'whether',
  'answer',
  'should',
  'be',
  'simple',
  'wait',
  'actually',
  'consider',
  'each',
  'step',
  'and',
  'it',
  'seems',
  'right',
  'because',
  'number',
  'value',
  'question',
  'clear',
  'enough',
  'now',
  'sure',
]
const CONTENT_OPENERS = ['The', 'Here', 'Sure', 'In', 'To', 'Yes']
const CONTENT_WORDS = [
  'answer',
  'is',
  'that',
  'the',
  'result',
  'follows',
  'from',
  'a',
  'simple',
  'idea',
  'which',
  'we',
  'can',
  'check',
  'directly',
  'so',
  'it',
  'holds',
  'in',
  'general',
  'here',
  'each',
  'step',
  'gives',
  'same',
  'value',
  'and',
  'this',
  'shows',
  'why',
  'works',
  'for',
  'you',
]
// Two-, three- and four-byte UTF-8, so relays that split or re-encode text get exercised.
const MULTIBYTE_WORDS = ['café', 'naïve', 'déjà', 'résumé', 'über', '—', '→', '≈', 'π', '✓', '🙂', '🚀']
const MULTIBYTE_OPENERS = ['Voilà', 'Café', 'Über', 'Déjà']

type Random = () => number

/** mulberry32: tiny, fast, and plenty for picking words. */
function mulberry32(state: number): Random {
  let a = state >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomFor(seed: number, requestKey: string): Random {
  const digest = createHash('sha256').update(`${seed}\u0000${requestKey}`).digest()
  return mulberry32(digest.readUInt32LE(0))
}

function pick(random: Random, words: readonly string[]): string {
  return words[Math.floor(random() * words.length)] ?? words[0] ?? ''
}

/** A word with occasional punctuation, so the text reads like prose. */
function prose(random: Random, words: readonly string[]): string {
  const word = pick(random, words)
  const roll = random()
  return roll < 0.08 ? `${word},` : roll < 0.14 ? `${word}.` : word
}

/**
 * `count` words: the first is `first` (or a multibyte opener when it is the only word),
 * the one at index 1 is multibyte, the rest prose; every word after the first gets a
 * leading space, as a BPE tokenizer would produce.
 */
function section(random: Random, count: number, words: readonly string[], first: string): string[] {
  const out: string[] = []
  for (let index = 0; index < count; index++) {
    if (index === 0) out.push(count === 1 ? pick(random, MULTIBYTE_OPENERS) : first)
    else if (index === 1) out.push(` ${pick(random, MULTIBYTE_WORDS)}`)
    else out.push(` ${prose(random, words)}`)
  }
  return out
}

export type PlanInput = { seed: number; requestKey: string; reasoningTokens: number; contentTokens: number }

/**
 * A chat answer from DeepSeek-R1-Distill: reasoning words, `</think>`, content words
 * (the first one starting with "\n\n"), then EOS. The prompt template already ends
 * with "<think>\n", so the output never contains `<think>`.
 */
export function chatTokenPlan(input: PlanInput): Token[] {
  const random = randomFor(input.seed, input.requestKey)
  const reasoning = section(random, input.reasoningTokens, REASONING_WORDS, pick(random, REASONING_OPENERS))
  const content = section(random, input.contentTokens, CONTENT_WORDS, pick(random, CONTENT_OPENERS))
  return [
    ...reasoning.map((text) => token('reasoning', text)),
    token('think_end', '</think>'),
    ...content.map((text, index) => token('content', index === 0 ? `\n\n${text}` : text)),
    token('eos', ''),
  ]
}

/** A raw completion continues the prompt: content words, each with a leading space, then EOS. */
export function completionTokenPlan(input: PlanInput): Token[] {
  const random = randomFor(input.seed, input.requestKey)
  const words = section(random, input.contentTokens, CONTENT_WORDS, pick(random, CONTENT_WORDS))
  return [...words.map((text) => token('content', text.startsWith(' ') ? text : ` ${text}`)), token('eos', '')]
}
