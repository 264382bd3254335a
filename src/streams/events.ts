import { errorBody, type ApiError } from '../errors.ts'
import type { Usage } from '../relay/chunk.ts'

// The events of a stream session, as the browser's EventSource sees them: named, numbered from 1,
// each data a one-line JSON document (JSON escapes line breaks, so a text delta can never split
// an SSE field or be trimmed by the parser).

export type StreamEventName = 'reasoning' | 'content' | 'usage' | 'done' | 'error'

export interface StreamEvent {
  id: number
  name: StreamEventName
  data: string
}

/** The text of one token (or a few): `{"text": "..."}`. */
export function textData(text: string): string {
  return JSON.stringify({ text })
}

export function usageData(usage: Usage): string {
  return JSON.stringify({
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    total_tokens: usage.total_tokens,
  })
}

export function doneData(finishReason: string | null): string {
  return JSON.stringify({ finish_reason: finishReason })
}

/** The same `{"error":{message,type,param,code}}` body as every HTTP error of the gateway. */
export function errorData(error: ApiError): string {
  return JSON.stringify(errorBody(error))
}

export function isFinal(event: StreamEvent): boolean {
  return event.name === 'done' || event.name === 'error'
}

export function eventFrame(event: StreamEvent): string {
  return `id: ${event.id}\nevent: ${event.name}\ndata: ${event.data}\n\n`
}

/** Sent first on every connection: how long EventSource waits before reconnecting. */
export function retryFrame(retryMs: number): string {
  return `retry: ${retryMs}\n\n`
}

/**
 * The last event a reconnecting browser saw: EventSource sends `Last-Event-ID`; a page that
 * opens a new EventSource can put it in `last_event_id`. Absent: 0, replay from the start.
 * Returns null when it is not an event id of ours.
 */
export function parseLastEventId(header: string | undefined, query: string | undefined): number | null {
  const value = (header ?? query ?? '').trim()
  if (value === '') return 0
  if (!/^\d{1,9}$/.test(value)) return null
  return Number(value)
}
