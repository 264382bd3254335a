// How key records read in a terminal. Never given a secret or a hash: create prints the secret
// itself, once.
import type { KeyLimits, KeyRecord } from '../../src/auth/key-record.ts'

export type KeyStatus = 'active' | 'disabled' | 'expired'

/** Disabled wins over expired: revocation is the deliberate act an operator looks for. */
export function keyStatus(record: KeyRecord, now = Date.now()): KeyStatus {
  if (record.disabled) return 'disabled'
  if (record.expires !== null && record.expires * 1000 <= now) return 'expired'
  return 'active'
}

function formatTime(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace('.000Z', 'Z')
}

function formatExpiry(record: KeyRecord): string {
  return record.expires === null ? 'never' : formatTime(record.expires)
}

const LIMIT_LABELS: Record<keyof KeyLimits, string> = {
  requestsPerMinute: 'requests/min',
  tokensPerMinute: 'tokens/min',
  concurrentStreams: 'concurrent streams',
  maxOutputTokens: 'max output tokens',
}

function formatLimits(limits: KeyLimits): string {
  const set = (Object.keys(LIMIT_LABELS) as (keyof KeyLimits)[])
    .filter((name) => limits[name] !== null)
    .map((name) => `${LIMIT_LABELS[name]} ${limits[name]}`)
  return set.length === 0 ? 'deployment defaults' : `${set.join(', ')} (others: deployment defaults)`
}

/** The record as labelled lines, for create and show. */
export function describeRecord(record: KeyRecord, now = Date.now()): string {
  const rows: [string, string][] = [
    ['id', record.id],
    ['name', record.name],
    ['scopes', record.scopes.join(',')],
    ['status', keyStatus(record, now)],
    ['created', formatTime(record.created)],
    ['expires', formatExpiry(record)],
    ['limits', formatLimits(record.limits)],
    ['origins', record.origins.length === 0 ? 'none (no browser use)' : record.origins.join(', ')],
  ]
  const rules = Object.entries(record.rules ?? {})
  if (rules.length > 0) rows.push(['rules', rules.map(([rule, on]) => `${rule}=${on ? 'on' : 'off'}`).join(', ')])
  return rows.map(([label, value]) => `${label.padEnd(8)} ${value}`).join('\n')
}

/** One line a key, in aligned columns. */
export function formatList(records: readonly KeyRecord[], now = Date.now()): string {
  if (records.length === 0) return 'No keys.'
  const header = ['ID', 'NAME', 'SCOPES', 'STATUS', 'EXPIRES']
  const rows = records.map((record) => [record.id, record.name, record.scopes.join(','), keyStatus(record, now), formatExpiry(record)])
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => row[column]?.length ?? 0)))
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n')
}
