import type { KeyRecord } from './key-record.ts'

/** The authenticated caller of a request. */
export interface Principal {
  keyId: string
  record: KeyRecord
  /** How the caller proved it: an API key, or a browser stream token minted with one. */
  via: 'api_key' | 'stream_token'
}
