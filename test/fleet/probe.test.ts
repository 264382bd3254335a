import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { parseLoad, runHealthProbe } from '../../src/fleet/probe.ts'
import { HEALTH_KEY, type HealthSnapshot } from '../../src/fleet/records.ts'
import { backendRecord, fleetEnv, prepareFleet, writeFleet } from '../support/fleet.ts'

describe('the health probe (Cron Trigger)', () => {
  it("stores each backend's health and load in KV: a live emulator healthy with its gauges, a dead port unhealthy", async () => {
    await prepareFleet()
    await writeFleet([backendRecord(0), { ...backendRecord(1), id: 'gpu-dead', url: 'http://127.0.0.1:9' }])
    const snapshot = await runHealthProbe(fleetEnv())
    const stored = await env.FLEET.get<HealthSnapshot>(HEALTH_KEY, 'json')
    expect(stored).toEqual(snapshot)
    expect(snapshot.backends['gpu-a']).toMatchObject({ healthy: true, running: 0, waiting: 0, problem: null })
    expect(snapshot.backends['gpu-a']?.kvCacheUsage).toBeTypeOf('number')
    expect(snapshot.backends['gpu-dead']).toMatchObject({ healthy: false, running: null })
  })
})

describe('parseLoad', () => {
  it("sums vLLM's gauges over engines and reads the older KV-cache name too", () => {
    const text = [
      '# HELP vllm:num_requests_running Number of requests in model execution batches.',
      '# TYPE vllm:num_requests_running gauge',
      'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
      'vllm:num_requests_running{engine="1",model_name="m"} 2.0',
      'vllm:num_requests_waiting{engine="0",model_name="m"} 7.0',
      'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25',
    ].join('\n')
    expect(parseLoad(text)).toEqual({ running: 5, waiting: 7, kvCacheUsage: 0.25 })
    expect(parseLoad('')).toEqual({ running: null, waiting: null, kvCacheUsage: null })
  })
})
