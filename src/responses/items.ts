// The items of a Responses API conversation (the shapes of the openai SDK's
// resources/responses/responses.d.ts: ResponseReasoningItem, ResponseOutputMessage,
// ResponseInputMessageItem): what a response outputs, and what the response store keeps. A leaf:
// the request parser, the response builders and the store's object all read it.

export type ItemStatus = 'in_progress' | 'completed' | 'incomplete'

export interface ReasoningItem {
  type: 'reasoning'
  id: string
  status: ItemStatus
  summary: { type: 'summary_text'; text: string }[]
  content: { type: 'reasoning_text'; text: string }[]
}

export interface MessageItem {
  type: 'message'
  id: string
  role: 'assistant'
  status: ItemStatus
  content: { type: 'output_text'; text: string; annotations: never[] }[]
}

export type OutputItem = ReasoningItem | MessageItem

/** A message the client sent, as the response store keeps it and lists it (input_items). */
export interface InputMessageItem {
  type: 'message'
  id: string
  role: 'user' | 'system' | 'developer'
  status: 'completed'
  content: { type: 'input_text'; text: string }[]
}

/** An item of a conversation: what the model was given, or what it answered. */
export type ConversationItem = InputMessageItem | OutputItem
