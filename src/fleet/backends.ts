import { misconfigured } from '../errors.ts'

/** One vLLM server the gateway can send requests to. */
export interface Backend {
  id: string
  /** Base URL without a trailing slash and without /v1, e.g. http://10.0.0.5:8000 */
  url: string
}

/**
 * Parses BACKEND_URLS: comma-separated http(s) base URLs. The id is the URL's host:port. Empty is
 * valid: a deployment (wrangler.toml's [env.production]) names no backend there, and routes only to
 * the fleet record's; with none registered either, requests get 503 no_backend_available
 * (src/fleet/registry.ts), never a default address.
 */
export function parseBackends(list: string): Backend[] {
  const urls = list
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
  return urls.map((entry) => {
    let url: URL
    try {
      url = new URL(entry)
    } catch {
      throw misconfigured('BACKEND_URLS has an entry that is not a URL.')
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw misconfigured('BACKEND_URLS entries must be http or https URLs.')
    }
    return { id: url.host, url: `${url.origin}${url.pathname.replace(/\/+$/, '')}` }
  })
}
