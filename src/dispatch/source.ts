import type { UpstreamCall } from './upstream-call.ts'

/** An accepted upstream request: its event stream and its call. */
export interface RelaySource {
  upstream: ReadableStream<Uint8Array>
  call: UpstreamCall
  /** The backend runs without a reasoning parser (see ChunkReader). */
  reasoningInContent?: boolean
}

/** Failover: the next accepted source after `source` failed with `error`, or null to end with the failure. */
export type NextSource<S extends RelaySource> = (source: S, error: unknown) => Promise<S | null>
