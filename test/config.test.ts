import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { readConfig } from '../src/config.ts'
import { fetchWithEnv } from './support/worker.ts'

describe('configuration', () => {
  it.each([
    [{ KEEPALIVE_INTERVAL_MS: 'soon' }, 'KEEPALIVE_INTERVAL_MS'],
    [{ FIRST_EVENT_TIMEOUT_MS: '0' }, 'FIRST_EVENT_TIMEOUT_MS'],
    [{ BACKEND_URLS: 'localhost:8001' }, 'BACKEND_URLS'],
    [{ PROMPT_RULES: 'all,-maths' }, 'PROMPT_RULES'],
    [{ PUBLIC_ORIGINS: 'https://gateway.example.com/dashboard' }, 'PUBLIC_ORIGINS'],
    [{ PUBLIC_ORIGINS: 'gateway.example.com' }, 'PUBLIC_ORIGINS'],
    [{ BODY_IDLE_TIMEOUT_MS: '0' }, 'BODY_IDLE_TIMEOUT_MS'],
    [{ FLEET_STALE_MAX_MS: '-5' }, 'FLEET_STALE_MAX_MS'],
    [{ BODY_TIMEOUT_MS: 'never' }, 'BODY_TIMEOUT_MS'],
    [{ UPSTREAM_HEADERS_TIMEOUT_MS: '-1' }, 'UPSTREAM_HEADERS_TIMEOUT_MS'],
    [{ HEDGING: 'yes' }, 'HEDGING'],
    [{ HEDGING: 'ON' }, 'HEDGING'],
    [{ HEDGING: '' }, 'HEDGING'],
    [{ SLOT_LEDGERS: 'true' }, 'SLOT_LEDGERS'],
  ])('answers a misconfigured deployment (%j) with a 500 that says what is wrong', async (overrides, name) => {
    const response = await fetchWithEnv(overrides, '/health', {})
    expect(response.status).toBe(500)
    const { error } = (await response.json()) as { error: { message: string; code: string } }
    expect(error.code).toBe('gateway_misconfigured')
    expect(error.message).toContain(name)
  })

  it.each([
    ['on', true],
    ['off', false],
    [undefined, true],
  ])('reads HEDGING=%s as hedging %s (unset: on)', (value, hedging) => {
    expect(readConfig({ ...env, HEDGING: value } as typeof env).fleet.hedging).toBe(hedging)
  })
})
