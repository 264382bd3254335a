import type { GatewayConfig } from '../config.ts'

/**
 * What a session runs under, fixed when it is created by the Worker that admitted it (so a
 * deploy or a setting changed mid-session does not change a running session).
 */
export interface SessionSettings {
  graceMs: number
  retentionS: number
  maxLifetimeS: number
  retryMs: number
  keepAliveMs: number
}

export function sessionSettings(config: GatewayConfig): SessionSettings {
  const { graceMs, retentionS, maxLifetimeS, retryMs } = config.streams
  return { graceMs, retentionS, maxLifetimeS, retryMs, keepAliveMs: config.keepAliveMs }
}
