// Fault injection and per-request timing: the `fault` option and the
// `[emulator KEY=VALUE ...]` directive a test may put in any message of a request.

/**
 * What goes wrong with a generation. `after` counts token chunks already sent
 * (reasoning or content chunks; never the role chunk), so `die_after:0` dies
 * before any data event and `die_after:2` after the second token chunk.
 */
export type Fault = { kind: 'none' } | { kind: 'refuse'; status: number } | { kind: 'hang' } | { kind: CountedKind; after: number }

/**
 * error_after: this generation alone gets the dead engine's error (400 event mid-stream, 500 for
 * stream: false); dead_after: the whole engine dies then (see engine.ts), every generation with it.
 */
type CountedKind = 'stall_after' | 'die_after' | 'error_after' | 'malformed_after' | 'dead_after'
const COUNTED_KINDS: readonly string[] = ['stall_after', 'die_after', 'error_after', 'malformed_after', 'dead_after']

/** A fault that fires after some number of token chunks. */
export type CountedFault = Extract<Fault, { after: number }>

function isCountedKind(kind: string): kind is CountedKind {
  return COUNTED_KINDS.includes(kind)
}

/** The counted fault that is due once `sent` token chunks are out, or null. */
export function dueFault(fault: Fault, sent: number): CountedFault | null {
  return 'after' in fault && sent >= fault.after ? fault : null
}

/** Parses "none", "hang", "refuse:503", "die_after:3", ...; null when it is none of these. */
export function parseFault(text: string): Fault | null {
  if (text === 'none') return { kind: 'none' }
  if (text === 'hang') return { kind: 'hang' }
  const match = /^([a-z_]+):(\d{1,6})$/.exec(text)
  if (match === null) return null
  const [, kind = '', digits = ''] = match
  const value = Number(digits)
  if (kind === 'refuse') return value >= 400 && value <= 599 ? { kind: 'refuse', status: value } : null
  if (isCountedKind(kind)) return { kind, after: value }
  return null
}

export type Overrides = {
  ttftMs?: number
  itlMs?: number
  reasoningTokens?: number
  contentTokens?: number
  /** After this many token chunks, the next token comes pauseMs late (a preempted sequence). */
  pauseAfter?: number
  pauseMs?: number
  /** Engine steps merged into one delta after the first (the API server falling behind); 1: none. */
  mergeTokens?: number
  fault?: Fault
}

type DirectiveResult = { ok: true; overrides: Overrides } | { ok: false; message: string }

const NUMERIC_KEYS: Record<string, keyof Omit<Overrides, 'fault'>> = {
  ttft_ms: 'ttftMs',
  itl_ms: 'itlMs',
  reasoning_tokens: 'reasoningTokens',
  content_tokens: 'contentTokens',
  pause_after: 'pauseAfter',
  pause_ms: 'pauseMs',
  merge_tokens: 'mergeTokens',
}

// `[emulator` then anything up to the closing bracket; the pairs inside are split on whitespace.
const DIRECTIVE = /\[emulator(?:\s+([^\]]*))?\]/g

/**
 * Collects every directive in `texts`, later ones overriding earlier ones.
 * An unknown key or a bad value is an error (a 400 for the request), so a typo
 * in a test fails loudly instead of silently running with the defaults.
 */
export function parseDirectives(texts: readonly string[]): DirectiveResult {
  const overrides: Overrides = {}
  for (const text of texts) {
    for (const match of text.matchAll(DIRECTIVE)) {
      for (const pair of (match[1] ?? '').split(/\s+/).filter((p) => p !== '')) {
        const problem = applyPair(overrides, pair)
        if (problem !== null) return { ok: false, message: `Invalid emulator directive ${match[0]}: ${problem}` }
      }
    }
  }
  return { ok: true, overrides }
}

function applyPair(overrides: Overrides, pair: string): string | null {
  const equals = pair.indexOf('=')
  if (equals <= 0) return `"${pair}" is not KEY=VALUE`
  const key = pair.slice(0, equals)
  const value = pair.slice(equals + 1)
  if (key === 'fault') {
    const fault = parseFault(value)
    if (fault === null) return `unknown fault "${value}"`
    overrides.fault = fault
    return null
  }
  const field = NUMERIC_KEYS[key]
  if (field === undefined) return `unknown key "${key}"`
  if (!/^\d{1,7}$/.test(value)) return `${key} must be a non-negative integer`
  overrides[field] = Number(value)
  return null
}
