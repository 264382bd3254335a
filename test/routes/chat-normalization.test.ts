import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { MATH_DIRECTIVE } from '../../src/normalize/index.ts'
import { randomSecret, seedKey } from '../support/keys.ts'
import { MODEL, chatInit, fetchWithEnv, postChat, recordedRequests } from '../support/worker.ts'

interface SentBody {
  messages: { role: string; content: string }[]
  temperature: number
  top_p: number
}

const conversation = {
  model: MODEL,
  messages: [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'What is 12 * 7?' },
  ],
}

async function lastSentBody(): Promise<SentBody> {
  return (await recordedRequests()).at(-1)?.body as unknown as SentBody
}

describe('DeepSeek-R1 prompt rules on the request path', () => {
  it("sends the backend the model's recommended request and names the rules applied", async () => {
    const response = await postChat({ ...conversation, temperature: 1.2 })
    expect(response.status).toBe(200)
    expect(response.headers.get('x-prompt-rules')).toBe('fold_system,math_directive,temperature,top_p')
    const sent = await lastSentBody()
    expect(sent.messages).toEqual([{ role: 'user', content: `You are terse.\n\nWhat is 12 * 7?\n${MATH_DIRECTIVE}` }])
    expect(sent.temperature).toBe(0.7)
    expect(sent.top_p).toBe(0.95)
  })

  it('says none when no rule changed anything', async () => {
    const response = await postChat({ model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], temperature: 0.6, top_p: 0.9 })
    expect(response.headers.get('x-prompt-rules')).toBe('none')
  })

  it('lets a key switch a rule off', async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret, { rules: { fold_system: false, math_directive: false } })
    const response = await postChat(conversation, { headers: { authorization: `Bearer ${secret}` } })
    expect(response.headers.get('x-prompt-rules')).toBe('temperature,top_p')
    expect((await lastSentBody()).messages.map((m) => m.role)).toEqual(['system', 'user'])
  })

  it('treats a developer message exactly as a system message: folded, and never sent to vLLM as developer', async () => {
    const developer = { ...conversation, messages: [{ role: 'developer', content: 'You are terse.' }, conversation.messages[1]] }
    const response = await postChat(developer)
    expect(response.status).toBe(200)
    expect(response.headers.get('x-prompt-rules')).toBe('fold_system,math_directive,temperature,top_p')
    expect((await lastSentBody()).messages).toEqual([{ role: 'user', content: `You are terse.\n\nWhat is 12 * 7?\n${MATH_DIRECTIVE}` }])

    const secret = randomSecret()
    await seedKey(env.KEYS, secret, { rules: { fold_system: false, math_directive: false } })
    await (await postChat(developer, { headers: { authorization: `Bearer ${secret}` } })).text()
    expect((await lastSentBody()).messages.map((m) => m.role)).toEqual(['system', 'user'])
  })

  it('lets a deployment switch every rule off', async () => {
    const response = await fetchWithEnv({ PROMPT_RULES: 'none' }, '/v1/chat/completions', chatInit(conversation))
    expect(response.headers.get('x-prompt-rules')).toBe('none')
    expect((await lastSentBody()).messages).toEqual(conversation.messages)
  })

  it('refuses an empty prompt with 400 before any backend is called', async () => {
    const response = await postChat({ model: MODEL, messages: [{ role: 'user', content: [] }] })
    expect(response.status).toBe(400)
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('empty_prompt')
  })

  it('accepts a model alias and sends the served name', async () => {
    await postChat({ ...conversation, model: 'deepseek-reasoner' })
    expect(((await recordedRequests()).at(-1)?.body as { model: string }).model).toBe(MODEL)
  })
})
