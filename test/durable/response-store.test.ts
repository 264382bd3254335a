import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import type { ResponseStore, StoredTurn } from '../../src/durable/response-store.ts'
import { newConversation, newId } from '../../src/responses/ids.ts'

type ConversationItem = StoredTurn['items'][number]

// The response store's Durable Object on its own: retention by its alarm, and the items a
// deletion keeps (held by another response) or collects (held by none).

function storeNamed(name: string): DurableObjectStub<ResponseStore> {
  return env.RESPONSES.get(env.RESPONSES.idFromName(name))
}

/** A fresh conversation's object, as src/responses/store.ts names one. */
function freshStore(): { stub: DurableObjectStub<ResponseStore>; conversation: string } {
  const conversation = newConversation()
  return { stub: storeNamed(`key_test/${conversation}`), conversation }
}

function userItem(conversation: string, text: string): ConversationItem {
  return { type: 'message', id: newId('msg', conversation), role: 'user', status: 'completed', content: [{ type: 'input_text', text }] }
}

function outputOf(conversation: string, text: string): [ConversationItem, ConversationItem] {
  return [
    {
      type: 'reasoning',
      id: newId('rs', conversation),
      status: 'completed',
      summary: [],
      content: [{ type: 'reasoning_text', text: `thinking about ${text}` }],
    },
    {
      type: 'message',
      id: newId('msg', conversation),
      role: 'assistant',
      status: 'completed',
      content: [{ type: 'output_text', text: `answer to ${text}`, annotations: [] }],
    },
  ]
}

/** A turn as src/responses/store.ts saves it: `context` is what it continues (ids already stored). */
function turnOf(conversation: string, text: string, expiresAt: number, context: ConversationItem[] = []) {
  const input = userItem(conversation, text)
  const output = outputOf(conversation, text)
  const response = { id: newId('resp', conversation), object: 'response', status: 'completed', output } as StoredTurn['response']
  const turn: StoredTurn = { response, inputIds: [...context, input].map((item) => item.id), items: [input, ...output], expiresAt }
  return { turn, input, output, context: [...context, input, ...output] }
}

/** The object's own tables (not the runtime's _cf_ ones). */
function tablesOf(stub: DurableObjectStub<ResponseStore>): Promise<string[]> {
  return runInDurableObject(stub, (_instance: ResponseStore, state) =>
    state.storage.sql
      .exec<{ name: string }>(
        `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`,
      )
      .toArray()
      .map((row) => row.name)
      .sort(),
  )
}

function itemIdsOf(stub: DurableObjectStub<ResponseStore>): Promise<string[]> {
  return runInDurableObject(stub, (_instance: ResponseStore, state) =>
    state.storage.sql
      .exec<{ id: string }>(`SELECT id FROM items`)
      .toArray()
      .map((row) => row.id)
      .sort(),
  )
}

function alarmOf(stub: DurableObjectStub<ResponseStore>): Promise<number | null> {
  return runInDurableObject(stub, (_instance: ResponseStore, state) => state.storage.getAlarm())
}

async function waitUntilPast(time: number): Promise<void> {
  while (Date.now() <= time) await new Promise((resolve) => setTimeout(resolve, Math.max(1, time - Date.now() + 1)))
}

const DAY = 86_400_000

describe('ResponseStore retention', () => {
  it('deletes an expired response and all its storage when the alarm runs', async () => {
    const { stub, conversation } = freshStore()
    const expiresAt = Date.now() + 300
    const { turn, context } = turnOf(conversation, 'short-lived', expiresAt)
    await stub.save(turn)
    expect(await stub.response(turn.response.id)).toEqual(turn.response)
    expect(await tablesOf(stub)).toEqual(['items', 'responses'])
    expect(await alarmOf(stub)).toBe(expiresAt)

    await waitUntilPast(expiresAt)
    // Run the alarm now (false if the runtime already ran it on time: the state is the same).
    await runDurableObjectAlarm(stub)

    expect(await stub.response(turn.response.id)).toBeNull()
    expect(await stub.inputItems(turn.response.id)).toBeNull()
    expect(
      await stub.read(
        turn.response.id,
        context.map((item) => item.id),
      ),
    ).toEqual({
      previous: null,
      items: context.map(() => null),
    })
    expect(await tablesOf(stub)).toEqual([])
    expect(await alarmOf(stub)).toBeNull()
  })

  it('hides a response from the moment it expires, before its alarm has run', async () => {
    const { stub, conversation } = freshStore()
    const expiresAt = Date.now() + 200
    const { turn } = turnOf(conversation, 'expiring', expiresAt)
    await stub.save(turn)
    // A later response keeps the alarm from deleting everything when it runs.
    const later = turnOf(conversation, 'kept', Date.now() + DAY)
    await stub.save(later.turn)
    await waitUntilPast(expiresAt)
    expect(await stub.response(turn.response.id)).toBeNull()
    expect(await stub.read(turn.response.id, [])).toMatchObject({ previous: null })
    expect(await stub.remove(turn.response.id)).toBe(false)
  })

  it('keeps the responses not yet expired, with their items, and sets the alarm for the next expiry', async () => {
    const { stub, conversation } = freshStore()
    const soon = Date.now() + 300
    const expiring = turnOf(conversation, 'expiring', soon)
    const kept = turnOf(conversation, 'kept', Date.now() + DAY)
    // Saved the other way round: the alarm must still be the earliest expiry.
    await stub.save(kept.turn)
    expect(await alarmOf(stub)).toBe(kept.turn.expiresAt)
    await stub.save(expiring.turn)
    expect(await alarmOf(stub)).toBe(soon)

    await waitUntilPast(soon)
    await runDurableObjectAlarm(stub)

    expect(await stub.response(expiring.turn.response.id)).toBeNull()
    expect(await stub.response(kept.turn.response.id)).toEqual(kept.turn.response)
    expect(await itemIdsOf(stub)).toEqual(kept.turn.items.map((item) => item.id).sort())
    expect(await alarmOf(stub)).toBe(kept.turn.expiresAt)
  })

  it('leaves no tables behind when a name never written is read, listed or deleted from', async () => {
    const { stub, conversation } = freshStore()
    const id = newId('resp', conversation)
    expect(await stub.read(id, [newId('msg', conversation)])).toEqual({ previous: null, items: [null] })
    expect(await stub.response(id)).toBeNull()
    expect(await stub.inputItems(id)).toBeNull()
    expect(await stub.remove(id)).toBe(false)
    await runDurableObjectAlarm(stub)
    expect(await tablesOf(stub)).toEqual([])
    expect(await alarmOf(stub)).toBeNull()
  })
})

describe('ResponseStore collection of items', () => {
  it('keeps the items a remaining response holds when another is deleted', async () => {
    const { stub, conversation } = freshStore()
    const expiresAt = Date.now() + DAY
    const first = turnOf(conversation, 'first', expiresAt)
    await stub.save(first.turn)
    // The second continues the first: its context holds the first's input and output.
    const second = turnOf(conversation, 'second', expiresAt, first.context)
    await stub.save(second.turn)

    expect(await stub.remove(first.turn.response.id)).toBe(true)
    expect(await stub.response(first.turn.response.id)).toBeNull()
    expect(await itemIdsOf(stub)).toEqual([...first.turn.items, ...second.turn.items].map((item) => item.id).sort())
    const read = await stub.read(
      second.turn.response.id,
      first.output.map((item) => item.id),
    )
    expect(read.previous).toEqual(second.context)
    expect(read.items).toEqual(first.output)
    expect(await stub.inputItems(second.turn.response.id)).toEqual([...first.context, second.input])
  })

  it('deletes the items no remaining response holds', async () => {
    const { stub, conversation } = freshStore()
    const expiresAt = Date.now() + DAY
    const first = turnOf(conversation, 'first', expiresAt)
    await stub.save(first.turn)
    const second = turnOf(conversation, 'second', expiresAt, first.context)
    await stub.save(second.turn)
    // A third in the same conversation that continues nothing.
    const third = turnOf(conversation, 'third', expiresAt)
    await stub.save(third.turn)

    expect(await stub.remove(third.turn.response.id)).toBe(true)
    expect(await itemIdsOf(stub)).toEqual([...first.turn.items, ...second.turn.items].map((item) => item.id).sort())
    expect(
      (
        await stub.read(
          null,
          third.turn.items.map((item) => item.id),
        )
      ).items,
    ).toEqual(third.turn.items.map(() => null))

    // Deleting the second now frees its own items; the first still holds its own.
    expect(await stub.remove(second.turn.response.id)).toBe(true)
    expect(await itemIdsOf(stub)).toEqual(first.turn.items.map((item) => item.id).sort())
    expect(await stub.read(first.turn.response.id, [])).toEqual({ previous: first.context, items: [] })
  })

  it('deletes all its storage, alarm included, when the last response is deleted', async () => {
    const { stub, conversation } = freshStore()
    const first = turnOf(conversation, 'only', Date.now() + DAY)
    await stub.save(first.turn)
    expect(await stub.remove(first.turn.response.id)).toBe(true)
    expect(await tablesOf(stub)).toEqual([])
    expect(await alarmOf(stub)).toBeNull()
    expect(await stub.remove(first.turn.response.id)).toBe(false)

    // The object stores again afterwards.
    const again = turnOf(conversation, 'again', Date.now() + DAY)
    await stub.save(again.turn)
    expect(await stub.response(again.turn.response.id)).toEqual(again.turn.response)
    expect(await tablesOf(stub)).toEqual(['items', 'responses'])
  })
})
