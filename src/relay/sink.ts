import type { ApiError } from '../errors.ts'
import type { UpstreamChunk } from './chunk.ts'

// What the generation engine hands a client-facing sink (src/relay/generation.ts).

export type DataChunk = Extract<UpstreamChunk, { kind: 'delta' | 'usage' }>

export interface GenerationSink {
  /** Whether anything reached the client: from then on a failed backend cannot be replaced. */
  readonly committed: boolean
  /** One chunk; `firstToken` is true for the first that carries reasoning or answer text. */
  chunk(chunk: DataChunk, firstToken: boolean): void
  /** A backend error event once committed; the engine then reads on to [DONE] or stops (`afterBackendError`). */
  backendError(error: ApiError, data: string): void
  /** After each upstream read: hand out what was produced; a promise to await is backpressure. */
  afterRead(): Promise<unknown> | undefined
  /** A failover replaces the attempt: forget what the last one produced (it never reached anyone). */
  restart?(): void
}
