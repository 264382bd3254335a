import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { ApiError, toApiError, type ErrorCode } from '../errors.ts'
import type { LeaseRef } from '../limits/admit.ts'
import type { SessionSettings } from './settings.ts'
import type { QueuePlace } from '../fleet/slots.ts'

// What the Worker and a StreamSession Durable Object say to each other over RPC. An exception
// thrown across RPC keeps only its message, so refusals travel as data and become ApiErrors again
// on the Worker's side, where the one error renderer turns them into responses.

export interface StartSession {
  keyId: string
  /** The key's place in the edge queue, should the fleet be full. */
  place: QueuePlace
  /** The admission's lease, settled by the session when its generation ends; null: none held. */
  lease: LeaseRef | null
  /** The upstream request body, validated and normalized exactly as for /v1/chat/completions. */
  body: Record<string, unknown>
  prefixKey: string | null
  /** The key's output cap wrote max_tokens: a "too large" refusal is retried with the room vLLM states. */
  gatewayMaxTokens: boolean
  requestId: string
  /** When the Worker received POST /v1/streams: the trace's start. */
  startedAt: number
  /** Browser origins that may open the event stream (besides the Worker's own). */
  origins: string[]
  settings: SessionSettings
}

export interface Refusal {
  status: number
  message: string
  type: string
  code: ErrorCode | null
  headers: Record<string, string>
}

export type StartResult = { ok: true } | { ok: false; refusal: Refusal }

export interface SubscribeInput {
  /** The last event id the browser saw (0: none). */
  lastEventId: number
  /** The request's Origin header (null: same-origin or not a browser). */
  origin: string | null
  /** The Worker's own origin, always allowed. */
  selfOrigin: string
}

export type SubscribeResult =
  | { kind: 'stream'; body: ReadableStream<Uint8Array> }
  /** Nothing after Last-Event-ID, and nothing more will come: the browser must stop. */
  | { kind: 'ended' }
  | { kind: 'refused'; refusal: Refusal }

export function toRefusal(error: unknown): Refusal {
  const known = toApiError(error)
  return { status: known.status, message: known.message, type: known.type, code: known.code, headers: known.headers }
}

export function fromRefusal(refusal: Refusal): ApiError {
  return new ApiError(refusal.status as ContentfulStatusCode, refusal.message, {
    type: refusal.type,
    code: refusal.code,
    headers: refusal.headers,
  })
}
