// What an emulator itself answers to one user message, uninterrupted (it is deterministic): the text
// a relayed stream must carry. Its reasoning field by vLLM release: `reasoning` (v0.20.2) or
// `reasoning_content` (v0.11.0).

export interface ReferenceAnswer {
  reasoning: string
  content: string
}

export async function referenceAnswer(emulatorUrl: string, apiKey: string, model: string, text: string): Promise<ReferenceAnswer> {
  const response = await fetch(`${emulatorUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: text }] }),
  })
  const body = (await response.json()) as {
    choices: { message: { content: string | null; reasoning?: string | null; reasoning_content?: string | null } }[]
  }
  const message = body.choices[0]?.message
  return { reasoning: message?.reasoning ?? message?.reasoning_content ?? '', content: message?.content ?? '' }
}
