// DeepSeek-R1 prompt rules as pure functions (see docs/architecture.md, "DeepSeek-R1 prompt rules").
export { RULE_NAMES, parsePromptRules, resolveRules, rulesForKey, type RuleName, type RuleSwitches } from './rules.ts'
export { looksLikeMath, MATH_DIRECTIVE } from './math.ts'
export { normalizeChatRequest, type NormalizeOptions, type Normalized, type UpstreamChatRequest } from './normalize.ts'
