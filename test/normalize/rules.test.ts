import { describe, expect, it } from 'vitest'
import { RULE_NAMES, parsePromptRules, resolveRules, rulesForKey, type RuleName, type RuleSwitches } from '../../src/normalize/index.ts'

function switchedOn(rules: Readonly<RuleSwitches>): RuleName[] {
  return RULE_NAMES.filter((name) => rules[name])
}

describe('resolveRules', () => {
  it.each([[undefined], [''], ['  '], ['all'], [' all , ']])('switches every rule on for %j', (setting) => {
    expect(switchedOn(resolveRules(setting))).toEqual(RULE_NAMES)
  })

  it('switches every rule off for "none"', () => {
    expect(switchedOn(resolveRules('none'))).toEqual([])
  })

  it('removes the rules named with a minus from "all"', () => {
    const rules = switchedOn(resolveRules('all, -math_directive,-think_prefix'))
    expect(rules).toEqual(RULE_NAMES.filter((name) => name !== 'math_directive' && name !== 'think_prefix'))
  })

  it('reads a list that starts with a removal as "all" minus it', () => {
    expect(switchedOn(resolveRules('-nfc'))).toEqual(RULE_NAMES.filter((name) => name !== 'nfc'))
  })

  it('switches on only the rules a plain list names', () => {
    expect(switchedOn(resolveRules('temperature,top_p'))).toEqual(['temperature', 'top_p'])
  })

  it('reads entries left to right, so a later "none" wins', () => {
    expect(switchedOn(resolveRules('temperature,none,top_p'))).toEqual(['top_p'])
  })

  it.each([['temprature'], ['all,-maths'], ['Temperature'], ['-all'], ['top_p;nfc']])(
    'refuses the unknown entry in %j as a misconfiguration that names it',
    (setting) => {
      expect(() => resolveRules(setting)).toThrow(expect.objectContaining({ status: 500, code: 'gateway_misconfigured' }))
      const entry = setting.split(',').at(-1) ?? ''
      expect(() => resolveRules(setting)).toThrow(entry)
    },
  )

  it('lets the key record switch rules on and off over the deployment', () => {
    const rules = resolveRules('temperature,top_p', { top_p: false, math_directive: true })
    expect(switchedOn(rules)).toEqual(['math_directive', 'temperature'])
  })

  it('ignores names in the key record that are not rules', () => {
    const perKey = JSON.parse('{"__proto__": true, "constructor": true, "legacy_rule": true, "nfc": false}')
    expect(resolveRules('all', perKey)).toEqual({ ...resolveRules('all'), nfc: false })
  })

  it('still refuses a bad deployment setting when the key record overrides every rule', () => {
    const perKey = Object.fromEntries(RULE_NAMES.map((name) => [name, true]))
    expect(() => resolveRules('bogus', perKey)).toThrow(expect.objectContaining({ status: 500 }))
  })
})

describe('rulesForKey', () => {
  it('hands back the deployment rule set itself when the key switches nothing', () => {
    const deployment = parsePromptRules('all,-top_p')
    expect(rulesForKey(deployment)).toBe(deployment)
    expect(rulesForKey(deployment, {})).toBe(deployment)
    expect(rulesForKey(deployment, { nfc: true, top_p: false, legacy_rule: false })).toBe(deployment)
  })

  it('leaves the deployment rule set as it was when a key switches a rule', () => {
    const deployment = parsePromptRules('all')
    const rules = rulesForKey(deployment, { nfc: false })
    expect(rules.nfc).toBe(false)
    expect(deployment.nfc).toBe(true)
    expect(Object.isFrozen(deployment)).toBe(true)
  })
})
