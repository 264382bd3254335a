// Ids of responses and their items. Each carries the conversation it was stored in: `resp_`,
// `msg_` or `rs_`, then 16 hex digits naming the conversation and 16 of its own. The response store
// keeps one Durable Object per key and conversation (src/durable/response-store.ts), so an id alone
// finds its object, with no directory to read first. An id that is not of this form was never
// stored here.

export type IdPrefix = 'resp' | 'rs' | 'msg'

const ID_FORM = /^(?:resp|rs|msg)_([0-9a-f]{16})[0-9a-f]{16}$/

/** 16 random hex digits (64 bits). */
function randomHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
}

/** A new conversation: 64 random bits, enough that one key's conversations never collide. */
export function newConversation(): string {
  return randomHex()
}

export function newId(prefix: IdPrefix, conversation: string): string {
  return `${prefix}_${conversation}${randomHex()}`
}

/** The conversation an id was stored in; null for an id this gateway never made. */
export function conversationOf(id: string): string | null {
  return ID_FORM.exec(id)?.[1] ?? null
}
