import type { WorkerEnv } from '../bindings.ts'
import type { ContextRead, ResponseStore } from '../durable/response-store.ts'
import { ApiError } from '../errors.ts'
import { withTimeout } from '../timeout.ts'
import { conversationOf, newConversation, newId } from './ids.ts'
import type { ConversationItem, InputMessageItem } from './items.ts'
import type { FinishedResponse } from './output.ts'
import type { ResponsesRequest } from './request.ts'

// The Worker's side of stored responses (store, previous_response_id, item_reference): what a
// request continues is read before it is prepared, and the finished response is written before
// its last event, so a next turn sent the moment this one ends finds it, wherever it is sent from.
// Where they live and why: src/durable/response-store.ts.

/**
 * Longest wait for the store. A Durable Object answers in milliseconds, a cold one across the
 * world in well under a second: one that has not answered in 5 s is down, and the client hears so
 * instead of hanging.
 */
const STORE_TIMEOUT_MS = 5000

type Stub = DurableObjectStub<ResponseStore>

/** A key's conversation: its own object, so another key's request finds nothing. */
function storeOf(env: WorkerEnv, keyId: string, conversation: string): Stub {
  return env.RESPONSES.get(env.RESPONSES.idFromName(`${keyId}/${conversation}`))
}

function answered<T>(work: Promise<T>): Promise<T> {
  return withTimeout(
    work,
    STORE_TIMEOUT_MS,
    () => new ApiError(503, 'The response store did not answer; please retry shortly.', { code: 'response_store_unavailable' }),
  )
}

type InputItem = Exclude<ResponsesRequest['input'], string>[number]

/** One request's place in a conversation. */
export interface Turn {
  /** The conversation its response and items are named in (src/responses/ids.ts). */
  conversation: string
  /** What the model is given, in order: the continued response's context and output, then this request's input. */
  context: ConversationItem[]
  /** Writes the finished response (its output items included); null when the request is not stored. */
  keep: ((response: FinishedResponse) => Promise<void>) | null
}

/**
 * Reads what the request continues (previous_response_id, item_reference inputs) from the key's
 * conversation objects, in one round trip per conversation named (usually one), and names this
 * turn's items. Refers to nothing that is not there: an id this key never stored is a 400 naming
 * the field, the same for another key's id as for one that never existed.
 */
export async function openTurn(env: WorkerEnv, keyId: string, request: ResponsesRequest, retentionMs: number): Promise<Turn> {
  const items = typeof request.input === 'string' ? [] : request.input
  const references = items.flatMap((item, index) => (item.type === 'item_reference' ? [{ id: item.id, index }] : []))
  const previousId = request.previous_response_id ?? null
  const named = previousId ?? references[0]?.id ?? null
  const conversation = named === null ? newConversation() : (conversationOf(named) ?? newConversation())

  // One read per conversation named: the continued response's, with the references it holds.
  const byConversation = new Map<string, string[]>()
  if (previousId !== null && conversationOf(previousId) !== null) byConversation.set(conversation, [])
  for (const { id } of references) {
    const home = conversationOf(id)
    if (home !== null) byConversation.set(home, [...(byConversation.get(home) ?? []), id])
  }
  const reads = new Map<string, ContextRead>(
    await Promise.all(
      [...byConversation].map(async ([name, ids]) => {
        const read = await answered(storeOf(env, keyId, name).read(name === conversation ? previousId : null, ids))
        return [name, read] as const
      }),
    ),
  )

  const previous = previousId === null ? [] : reads.get(conversation)?.previous
  if (!previous) {
    throw new ApiError(400, `Previous response with id '${previousId}' not found.`, {
      param: 'previous_response_id',
      code: 'previous_response_not_found',
    })
  }
  const found = (id: string): ConversationItem | null => {
    const home = conversationOf(id)
    const read = home === null ? undefined : reads.get(home)
    return read?.items[(byConversation.get(home as string) ?? []).indexOf(id)] ?? null
  }

  const context = [...previous]
  const given = new Set(context.map((item) => item.id))
  // What the conversation's object does not hold yet: this request's own items, and items referenced from other conversations.
  const newItems: ConversationItem[] = []
  items.forEach((item, index) => {
    if (item.type === 'item_reference') {
      const referenced = found(item.id)
      if (!referenced) throw new ApiError(400, `Item with id '${item.id}' not found.`, { param: `input[${index}]`, code: 'item_not_found' })
      // An item is given once (referenced twice, or already in the continued response): a
      // context lists each id once, so input_items pages by id.
      if (given.has(referenced.id)) return
      given.add(referenced.id)
      context.push(referenced)
      if (conversationOf(item.id) !== conversation) newItems.push(referenced)
      return
    }
    const own = conversationItemOf(item, conversation)
    context.push(own)
    newItems.push(own)
  })
  if (typeof request.input === 'string') {
    const own = inputMessage(newId('msg', conversation), 'user', request.input)
    context.push(own)
    newItems.push(own)
  }

  const storing = retentionMs > 0 && request.store !== false
  const keep = storing
    ? (response: FinishedResponse) =>
        answered(
          storeOf(env, keyId, conversation).save({
            response,
            inputIds: context.map((item) => item.id),
            items: [...newItems, ...response.output],
            expiresAt: Date.now() + retentionMs,
          }),
        )
    : null
  return { conversation, context, keep }
}

function inputMessage(id: string, role: InputMessageItem['role'], text: string): InputMessageItem {
  return { type: 'message', id, role, status: 'completed', content: [{ type: 'input_text', text }] }
}

/** A request's own input item as the conversation keeps it, under a new id (a client's `id` is not trusted as a storage key). */
function conversationItemOf(item: Exclude<InputItem, { type: 'item_reference' }>, conversation: string): ConversationItem {
  if (item.type === 'reasoning') {
    return {
      type: 'reasoning',
      id: newId('rs', conversation),
      status: 'completed',
      summary: (item.summary ?? []).map(({ text }) => ({ type: 'summary_text', text })),
      content: (item.content ?? []).map(({ text }) => ({ type: 'reasoning_text', text })),
    }
  }
  const parts = typeof item.content === 'string' ? [item.content] : item.content.map((part) => part.text)
  const id = newId('msg', conversation)
  if (item.role === 'assistant') {
    return {
      type: 'message',
      id,
      role: 'assistant',
      status: 'completed',
      content: parts.map((text) => ({ type: 'output_text', text, annotations: [] })),
    }
  }
  return { type: 'message', id, role: item.role, status: 'completed', content: parts.map((text) => ({ type: 'input_text', text })) }
}

/** A stored response of this key, or null (never stored, another key's, deleted or expired). */
export async function readStoredResponse(env: WorkerEnv, keyId: string, id: string): Promise<Record<string, unknown> | null> {
  const conversation = conversationOf(id)
  if (conversation === null) return null
  return answered(storeOf(env, keyId, conversation).response(id))
}

/** The items the model was given for a stored response, or null as readStoredResponse. */
export async function readInputItems(env: WorkerEnv, keyId: string, id: string): Promise<ConversationItem[] | null> {
  const conversation = conversationOf(id)
  if (conversation === null) return null
  return answered(storeOf(env, keyId, conversation).inputItems(id))
}

/** Deletes a stored response of this key: false if there was none. */
export async function deleteStoredResponse(env: WorkerEnv, keyId: string, id: string): Promise<boolean> {
  const conversation = conversationOf(id)
  if (conversation === null) return false
  return answered(storeOf(env, keyId, conversation).remove(id))
}
