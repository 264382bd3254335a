// The credentials the Worker sends a backend: vLLM's --api-key as a Bearer token, and the
// Cloudflare Access service-token headers that let the request through the backend's tunnel.
// The Access pair is chosen per fleet entry (`accessSecret`), so one fleet can span tunnels
// whose hostnames each require their own token. Values come from Worker secrets and go into
// request headers only: never into a log line, an error message or a response.
import type { WorkerEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import type { BackendRecord } from './records.ts'

/** Reads a secret by name; undefined when unset or empty. */
export type SecretLookup = (name: string) => string | undefined

/** What every backend call needs besides the backend: the vLLM key and where secrets come from. */
export interface BackendCredentials {
  apiKey: string | undefined
  secret: SecretLookup
}

/**
 * A Worker secret by a name only known at run time (ACCESS_CLIENT_ID_<NAME>): secrets are plain
 * string bindings on env, which `wrangler types` cannot list, so they are read through this one
 * typed accessor instead of widening Env.
 */
export function secretOf(env: WorkerEnv, name: string): string | undefined {
  const value: unknown = (env as unknown as Record<string, unknown>)[name]
  return typeof value === 'string' && value !== '' ? value : undefined
}

export function credentialsFrom(env: WorkerEnv, apiKey: string | undefined): BackendCredentials {
  return { apiKey, secret: (name) => secretOf(env, name) }
}

/** The names of the secret pair a fleet entry's `accessSecret` selects (none: the default pair). */
export function accessSecretNames(accessSecret: string | undefined): { id: string; secret: string } {
  const suffix = accessSecret === undefined ? '' : `_${accessSecret}`
  return { id: `ACCESS_CLIENT_ID${suffix}`, secret: `ACCESS_CLIENT_SECRET${suffix}` }
}

/**
 * The headers that authenticate the gateway to `backend`. A named pair must exist in full; the
 * default pair is optional (a local emulator has no tunnel), but half of it is a mistake. A
 * missing secret is the deployment's fault and the backend cannot be reached without it: a 502
 * naming the secret (never a value), which fails this backend over to the next.
 */
export function backendHeaders(backend: Pick<BackendRecord, 'accessSecret'>, credentials: BackendCredentials): Record<string, string> {
  const headers: Record<string, string> = {}
  if (credentials.apiKey) headers.authorization = `Bearer ${credentials.apiKey}`
  const names = accessSecretNames(backend.accessSecret)
  const id = credentials.secret(names.id)
  const secret = credentials.secret(names.secret)
  if (id === undefined && secret === undefined && backend.accessSecret === undefined) return headers
  const missing = [id === undefined ? names.id : null, secret === undefined ? names.secret : null].filter((name) => name !== null)
  if (id === undefined || secret === undefined) {
    throw new ApiError(
      502,
      `The gateway has no Cloudflare Access credentials for this backend: set the Worker secret ${missing.join(' and ')}.`,
      {
        code: 'upstream_credentials_missing',
      },
    )
  }
  headers['cf-access-client-id'] = id
  headers['cf-access-client-secret'] = secret
  return headers
}
