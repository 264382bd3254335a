// The chat template of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (its tokenizer_config.json), as
// vLLM v0.11.0 applies it (vllm/entrypoints/chat_utils.py, then apply_hf_chat_template):
//   BOS + the last system message's text,
//   per user turn `<｜User｜>` + text,
//   per assistant turn `<｜Assistant｜>` + the text after its last `</think>` + `<｜end▁of▁sentence｜>`,
//   and, with add_generation_prompt (the default), `<｜Assistant｜><think>\n` at the end.
// Tool turns and other roles are not rendered here (the deployment has no tool parser).

export const SPECIAL_TOKENS = {
  bos: '<｜begin▁of▁sentence｜>',
  eos: '<｜end▁of▁sentence｜>',
  user: '<｜User｜>',
  assistant: '<｜Assistant｜>',
  thinkStart: '<think>',
  thinkEnd: '</think>',
} as const

export type ChatMessageInput = { role: string; content: unknown }

/**
 * A message's content as the string the template sees. vLLM parses content into parts and, for a
 * template that reads content as a string ("string" content format), joins the text parts with
 * "\n" (chat_utils.py, _parse_chat_message_content_parts); null content is no parts, so "".
 */
export function contentText(content: unknown): string {
  if (content === null || content === undefined) return ''
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return ''
  const texts: string[] = []
  for (const part of content as unknown[]) {
    if (typeof part === 'string') texts.push(part)
    else if (typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string') texts.push(part.text)
  }
  return texts.join('\n')
}

/** The rendered prompt cut at message boundaries: head (BOS + system), one segment per message, the generation prompt. */
export type RenderedChat = {
  /** segments[0] is the head, segments[i + 1] is message i's text (empty for system turns), the last is the generation prompt. */
  segments: string[]
}

function messageSegment(message: ChatMessageInput): string {
  const text = contentText(message.content)
  if (message.role === 'user') return SPECIAL_TOKENS.user + text
  if (message.role === 'assistant') {
    // The template drops an earlier turn's reasoning: only what follows its last </think> stays.
    const answer = text.split(SPECIAL_TOKENS.thinkEnd).at(-1) ?? ''
    return SPECIAL_TOKENS.assistant + answer + SPECIAL_TOKENS.eos
  }
  return ''
}

/** Every segment starts at an added token, so the segments' token counts add up to the prompt's. */
export function renderChat(messages: readonly ChatMessageInput[], addGenerationPrompt = true): RenderedChat {
  let system = ''
  for (const message of messages) if (message.role === 'system') system = contentText(message.content)
  const segments = [SPECIAL_TOKENS.bos + system, ...messages.map(messageSegment)]
  segments.push(addGenerationPrompt ? `${SPECIAL_TOKENS.assistant}${SPECIAL_TOKENS.thinkStart}\n` : '')
  return { segments }
}
