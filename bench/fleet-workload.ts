// The fleet simulation's workload: multi-turn conversations. Each opens with a long message of its
// own (a document to discuss, ~600 tokens), and every later turn repeats the whole conversation so
// far plus a short question, as chat clients do: the shared prefix vLLM's prefix cache can reuse.

const WORDS = [
  'gpu',
  'batch',
  'token',
  'cache',
  'latency',
  'stream',
  'model',
  'prefix',
  'queue',
  'decode',
  'prefill',
  'router',
  'edge',
  'worker',
  'reason',
  'answer',
]
const MODEL = 'deepseek-r1-distill-qwen-1.5b'

export interface Conversation {
  opening: string
  /** Turns already answered. */
  turns: number
  maxTurns: number
  finished(): boolean
}

export function newConversation(): Conversation {
  const words: string[] = []
  while (words.join(' ').length < 2_400) words.push(WORDS[Math.floor(Math.random() * WORDS.length)] as string)
  const conversation: Conversation = {
    opening: `Document ${Math.random().toString(36).slice(2)}: ${words.join(' ')}. Summarize it.`,
    turns: 0,
    maxTurns: 3 + Math.floor(Math.random() * 4),
    finished: () => conversation.turns >= conversation.maxTurns,
  }
  return conversation
}

/** The request for the conversation's next turn (assistant replies are stand-ins of fixed text). */
export function conversationTurn(conversation: Conversation): Record<string, unknown> {
  const messages: { role: string; content: string }[] = [{ role: 'user', content: conversation.opening }]
  for (let turn = 1; turn <= conversation.turns; turn++) {
    messages.push({ role: 'assistant', content: `Answer to turn ${turn}.` }, { role: 'user', content: `Follow-up question ${turn}?` })
  }
  return { model: MODEL, stream: true, max_tokens: 64, messages }
}
