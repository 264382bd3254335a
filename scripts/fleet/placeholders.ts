// The placeholders the repository ships, which must never reach a fleet record: the all-zero
// tunnel id of gpu-backend/tunnel/config.yml and hostnames under the names reserved for examples
// and tests (RFC 2606, RFC 6761), which never reach a real backend. `add` and `from-compose`
// refuse them (exit 1) rather than print or store a fleet entry that cannot work.

/** Second-level names and top-level domains reserved for documentation and testing. */
const RESERVED_DOMAINS = ['example.com', 'example.net', 'example.org']
const RESERVED_TLDS = ['example', 'invalid', 'test']

/** The reserved name `hostname` falls under (such as "example.com" or ".test"), or null for a usable one. */
export function reservedDomain(hostname: string): string | null {
  const host = hostname.toLowerCase().replace(/\.$/, '')
  const domain = RESERVED_DOMAINS.find((name) => host === name || host.endsWith(`.${name}`))
  if (domain !== undefined) return domain
  const tld = RESERVED_TLDS.find((name) => host === name || host.endsWith(`.${name}`))
  return tld === undefined ? null : `.${tld}`
}

/** A tunnel id that is a placeholder rather than the UUID `cloudflared tunnel create` printed: all zeros, or none. */
export function isPlaceholderTunnelId(id: unknown): boolean {
  if (id === undefined || id === null) return true
  const text = String(id).trim()
  return text === '' || /^[0-]+$/.test(text)
}

/** The hostnames of `urls` under a reserved name, each with that name ("vllm-0.gpu-host.example.com (example.com)"). */
export function reservedHosts(urls: readonly string[]): string[] {
  const found: string[] = []
  for (const url of urls) {
    const hostname = URL.canParse(url) ? new URL(url).hostname : ''
    const domain = reservedDomain(hostname)
    if (domain !== null && !found.some((entry) => entry.startsWith(`${hostname} `))) found.push(`${hostname} (${domain})`)
  }
  return found
}

/** Said of such hostnames: "vllm-0.gpu-host.example.com (example.com) is " + RESERVED_WHY. */
export const RESERVED_WHY = 'under names reserved for examples and tests (RFC 2606, RFC 6761), which never reach a backend'
