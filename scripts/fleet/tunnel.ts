// The Cloudflare Tunnel of a GPU host's compose file: which compose service each tunnel hostname
// reaches, read from the cloudflared service's own configuration (gpu-backend/tunnel/config.yml),
// the file it mounts, so the fleet entries follow what the tunnel really routes.
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, join } from 'node:path'
import { parse } from 'yaml'
import { ComposeError, CONTAINER_PORT, interpolate, type ComposeFile } from './compose.ts'

/** Where the cloudflared image looks for its configuration, and where compose.yaml mounts it. */
export const CLOUDFLARED_CONFIG = '/etc/cloudflared/config.yml'

export interface TunnelIngressRule {
  hostname?: string
  path?: string
  service: string
}

export interface TunnelConfig {
  /** The host path of config.yml. */
  path: string
  /** Its `tunnel:`, the tunnel's UUID (or name); the repository ships an all-zero placeholder. */
  tunnel: unknown
  ingress: TunnelIngressRule[]
}

interface ServiceShape {
  profiles?: unknown
  image?: unknown
  volumes?: unknown
}

function isCloudflared(file: ComposeFile, service: ServiceShape): boolean {
  return typeof service.image === 'string' && /^(docker\.io\/)?cloudflare\/cloudflared[:@]/.test(interpolate(service.image, file.env))
}

/** The host path mounted at CLOUDFLARED_CONFIG (short or long volume syntax), or null. */
function configMount(file: ComposeFile, service: ServiceShape): string | null {
  for (const volume of Array.isArray(service.volumes) ? (service.volumes as unknown[]) : []) {
    const [source, target] =
      typeof volume === 'object' && volume !== null
        ? [String((volume as { source?: unknown }).source ?? ''), String((volume as { target?: unknown }).target ?? '')]
        : interpolate(String(volume), file.env).split(':')
    if (target !== CLOUDFLARED_CONFIG || !source) continue
    const host = interpolate(source, file.env)
    return isAbsolute(host) ? host : join(dirname(file.path), host)
  }
  return null
}

/** Reads config.yml's ingress rules; a file cloudflared could not use is a ComposeError. */
export function readTunnelConfig(path: string): TunnelConfig {
  let document: unknown
  try {
    document = parse(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new ComposeError(`Cannot read the tunnel configuration ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  const { ingress, tunnel } = (document as { ingress?: unknown; tunnel?: unknown } | null) ?? {}
  if (!Array.isArray(ingress) || !ingress.every((rule) => typeof (rule as { service?: unknown } | null)?.service === 'string')) {
    throw new ComposeError(`${path} has no ingress rules, each with a service.`)
  }
  return { path, tunnel, ingress: ingress as TunnelIngressRule[] }
}

/** The tunnel configurations of the cloudflared services in `profile`. */
export function tunnelConfigs(file: ComposeFile, inProfile: (service: ServiceShape) => boolean): TunnelConfig[] {
  const configs: TunnelConfig[] = []
  for (const [name, service] of Object.entries(file.services as Record<string, ServiceShape>)) {
    if (!inProfile(service) || !isCloudflared(file, service)) continue
    const path = configMount(file, service)
    if (path === null) throw new ComposeError(`Service ${name} runs cloudflared without a configuration mounted at ${CLOUDFLARED_CONFIG}.`)
    configs.push(readTunnelConfig(path))
  }
  return configs
}

/**
 * The public hostname of each compose service the tunnels reach on CONTAINER_PORT: every rule of
 * one hostname must reach the same service, and a service has one hostname.
 */
export function tunnelHostnames(configs: readonly TunnelConfig[], services: ReadonlySet<string>): Map<string, string> {
  const byHostname = new Map<string, string>()
  for (const config of configs) {
    for (const rule of config.ingress) {
      const origin = /^https?:\/\/([^/:]+):(\d+)$/.exec(rule.service)
      if (!rule.hostname || !origin || !services.has(origin[1] ?? '') || Number(origin[2]) !== CONTAINER_PORT) continue
      const service = origin[1] ?? ''
      const earlier = byHostname.get(rule.hostname)
      if (earlier !== undefined && earlier !== service)
        throw new ComposeError(`${config.path}: ${rule.hostname} reaches both ${earlier} and ${service}; one hostname per backend.`)
      byHostname.set(rule.hostname, service)
    }
  }
  const byService = new Map<string, string>()
  for (const [hostname, service] of byHostname) {
    const earlier = byService.get(service)
    if (earlier !== undefined) throw new ComposeError(`Service ${service} is reached at two tunnel hostnames, ${earlier} and ${hostname}.`)
    byService.set(service, hostname)
  }
  return byService
}
