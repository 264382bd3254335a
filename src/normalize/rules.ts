import { misconfigured } from '../errors.ts'

/**
 * Every prompt rule, in the order normalizeChatRequest applies them. The order matters: later
 * rules read the strings earlier ones produced (the math check reads the merged last user turn),
 * and `applied` lists rules in this same order.
 */
export const RULE_NAMES = [
  'nfc',
  'strip_reasoning',
  'fold_system',
  'merge_consecutive',
  'math_directive',
  'think_prefix',
  'temperature',
  'top_p',
] as const

export type RuleName = (typeof RULE_NAMES)[number]
export type RuleSwitches = Record<RuleName, boolean>

export function isRuleName(name: string): name is RuleName {
  return (RULE_NAMES as readonly string[]).includes(name)
}

/**
 * The deployment's rule set: the PROMPT_RULES setting, parsed once per isolate with the rest of
 * the configuration (src/config.ts).
 *
 * The setting is "all" when undefined or empty, "none", or a comma list read left to right,
 * where "all"/"none" switch every rule and "name"/"-name" switch one: "all,-math_directive",
 * "temperature,top_p". A list that starts with a removal starts from "all", since
 * "-math_directive" alone has no other sensible reading. An unknown entry is a deployment
 * mistake, so it fails loudly (500) instead of silently running a different rule set.
 */
export function parsePromptRules(deployment: string | undefined): Readonly<RuleSwitches> {
  const entries = (deployment ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
  const rules = everyRule(entries[0]?.startsWith('-') ?? true)
  for (const entry of entries) applyEntry(rules, entry)
  return Object.freeze(rules)
}

/**
 * The rules for one request: the deployment's, with the API key's record switches on top. Per
 * request, so kept to a copy only when the key switches something. Names the key does not know
 * are ignored, because key records may outlive a rule that was renamed or removed.
 */
export function rulesForKey(deployment: Readonly<RuleSwitches>, perKey?: Record<string, boolean>): Readonly<RuleSwitches> {
  if (!perKey) return deployment
  let rules: RuleSwitches | null = null
  for (const name of RULE_NAMES) {
    const value = perKey[name]
    if (!Object.hasOwn(perKey, name) || typeof value !== 'boolean' || value === deployment[name]) continue
    rules ??= { ...deployment }
    rules[name] = value
  }
  return rules ?? deployment
}

/** Both steps at once, for callers with no configuration at hand (tests, tools). */
export function resolveRules(deployment: string | undefined, perKey?: Record<string, boolean>): Readonly<RuleSwitches> {
  return rulesForKey(parsePromptRules(deployment), perKey)
}

function applyEntry(rules: RuleSwitches, entry: string): void {
  if (entry === 'all' || entry === 'none') {
    Object.assign(rules, everyRule(entry === 'all'))
    return
  }
  const on = !entry.startsWith('-')
  const name = on ? entry : entry.slice(1)
  if (!isRuleName(name)) {
    throw misconfigured(`PROMPT_RULES has an unknown entry "${entry}". Known rules: ${RULE_NAMES.join(', ')}.`)
  }
  rules[name] = on
}

function everyRule(on: boolean): RuleSwitches {
  return Object.fromEntries(RULE_NAMES.map((name) => [name, on])) as RuleSwitches
}
