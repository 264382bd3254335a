// The Worker's bindings: what wrangler.toml declares and the secrets it cannot see. A leaf module,
// so configuration and Durable Objects can name the Env without importing the Hono app's types.

/**
 * Secrets live outside wrangler.toml (wrangler secret put, or .dev.vars locally), so
 * `wrangler types` cannot see them. Everything else comes from src/worker-configuration.d.ts,
 * regenerated with `npm run types` whenever wrangler.toml changes.
 */
export interface Secrets {
  /** The backends' shared vLLM `--api-key`; sent upstream only, never to clients or logs. */
  BACKEND_API_KEY?: string
  /**
   * The default Cloudflare Access service token sent to every backend whose fleet entry names no
   * `accessSecret` (set both or neither). Named pairs, ACCESS_CLIENT_ID_<NAME> and
   * ACCESS_CLIENT_SECRET_<NAME>, are read through secretOf (src/fleet/access.ts).
   */
  ACCESS_CLIENT_ID?: string
  ACCESS_CLIENT_SECRET?: string
  /** Comma-separated HMAC secrets for browser stream tokens; the first signs, all verify. */
  STREAM_TOKEN_SECRETS?: string
}

export type WorkerEnv = Cloudflare.Env & Secrets
