import { describe, expect, it } from 'vitest'
import { keyWithLimits } from '../support/limits.ts'
import { adminAuth, aggregator, flushLatency } from '../support/telemetry.ts'
import { callWorker, chatBody, emulatorUrl, postChat } from '../support/worker.ts'

const backendId = new URL(emulatorUrl).host

async function scrape(): Promise<{ text: string; value(sample: string): number }> {
  const response = await callWorker('/metrics', { headers: await adminAuth() })
  expect(response.status).toBe(200)
  expect(response.headers.get('content-type')).toContain('text/plain; version=0.0.4')
  const text = await response.text()
  return {
    text,
    value(sample) {
      const line = text.split('\n').find((candidate) => candidate.startsWith(`${sample} `))
      return line === undefined ? 0 : Number(line.slice(sample.length + 1))
    },
  }
}

describe('GET /metrics', () => {
  it('is valid Prometheus text: HELP and TYPE for each metric, then name{labels} value lines', async () => {
    const { text } = await scrape()
    for (const line of text.trimEnd().split('\n')) {
      expect(line).toMatch(/^(# (HELP|TYPE) edge_proxy_\w+ .+|edge_proxy_\w+(\{(\w+="(?:[^"\\]|\\.)*",?)+\})? -?[\d.e+]+)$/)
    }
    expect(text).toContain('# TYPE edge_proxy_time_to_first_token_seconds histogram')
    expect(text).toContain('# TYPE edge_proxy_edge_wait_seconds histogram')
    expect(text).toContain('# TYPE edge_proxy_streams_in_flight gauge')
  })

  it('counts responses by route and status, chat outcomes, the first-token histogram and refusals, fleet-wide', async () => {
    // The counts are the telemetry aggregator's, fleet-wide: an earlier file's last batch may still
    // be on its way (once seen on a loaded machine: one 200 more than this test sent), so it lands
    // before the reading the test counts from.
    await flushLatency()
    const before = await scrape()
    const key = await keyWithLimits({ requestsPerMinute: 2 })
    for (let i = 0; i < 3; i++) await (await postChat(chatBody('hi', { stream: true }), { secret: key.secret })).text()
    await flushLatency()
    const after = await scrape()
    const grew = (sample: string) => after.value(sample) - before.value(sample)
    expect(grew('edge_proxy_responses_total{route="/v1/chat/completions",status="200"}')).toBe(2)
    expect(grew('edge_proxy_responses_total{route="/v1/chat/completions",status="429"}')).toBe(1)
    expect(grew(`edge_proxy_chat_requests_total{backend="${backendId}",outcome="ok"}`)).toBe(2)
    expect(grew('edge_proxy_chat_requests_total{backend="-",outcome="refused"}')).toBe(1)
    expect(grew(`edge_proxy_time_to_first_token_seconds_count{backend="${backendId}"}`)).toBe(2)
    expect(grew('edge_proxy_rate_limit_refusals_total')).toBe(1)
    // Histogram buckets are cumulative and end at the count.
    const buckets = after.text
      .split('\n')
      .filter((line) => line.startsWith(`edge_proxy_time_to_first_token_seconds_bucket{backend="${backendId}"`))
      .map((line) => Number(line.split(' ')[1]))
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b))
    expect(buckets.at(-1)).toBe(after.value(`edge_proxy_time_to_first_token_seconds_count{backend="${backendId}"}`))
  })

  it('has a histogram of the waits at the edge, of the requests that waited only', async () => {
    const waited = 'gpu-metrics-edge-wait'
    const before = await scrape()
    const record = (edgeWaitMs: number) => ({
      endedAt: Date.now(),
      model: 'm',
      keyId: null,
      backend: waited,
      reason: 'done' as const,
      outcome: 'ok' as const,
      status: 200,
      attempts: 1,
      headersMs: edgeWaitMs + 5,
      edgeWaitMs,
      ttftBackendMs: 40,
      ttftClientMs: edgeWaitMs + 42,
      totalMs: edgeWaitMs + 200,
      completionTokens: 10,
      decodeTokensPerS: 100,
      hedged: false,
      hedgeWon: null,
    })
    await aggregator().ingest({
      isolate: 'metrics-test',
      sentAt: Date.now(),
      streamsInFlight: 0,
      records: [record(300), record(0)],
      responses: {},
      counters: {},
    })
    const after = await scrape()
    const grew = (sample: string) => after.value(sample) - before.value(sample)
    expect(grew(`edge_proxy_edge_wait_seconds_count{backend="${waited}"}`)).toBe(1)
    expect(grew(`edge_proxy_edge_wait_seconds_sum{backend="${waited}"}`)).toBeCloseTo(0.3, 6)
    expect(grew(`edge_proxy_edge_wait_seconds_bucket{backend="${waited}",le="0.25"}`)).toBe(0)
    expect(grew(`edge_proxy_edge_wait_seconds_bucket{backend="${waited}",le="0.5"}`)).toBe(1)
    // Both count in the client's first-token histogram, the wait included.
    expect(grew(`edge_proxy_time_to_first_token_seconds_count{backend="${waited}"}`)).toBe(2)
    expect(grew(`edge_proxy_time_to_first_token_seconds_bucket{backend="${waited}",le="0.25"}`)).toBe(1)
  })

  it('has the board of keys: a gauge of flagged keys, a series per flagged key, and the share used of the keys nearest their budgets', async () => {
    const id = () => `key_${[...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, '0')).join('')}`
    const [flagged, near] = [id(), id()]
    const before = await scrape()
    const now = Date.now()
    const day = { period: 'day' as const, limit: 1000, used: 999, remaining: 1, resetsAt: now + 3_600_000 }
    const month = { period: 'month' as const, limit: 100_000, used: 25_000, remaining: 75_000, resetsAt: now + 86_400_000 }
    await aggregator().reportKey({
      keyId: flagged,
      at: now,
      budgets: [],
      spike: { flagged: true, hourTokens: 80_000, normalTokens: 1_000 },
    })
    await aggregator().reportKey({
      keyId: near,
      at: now,
      budgets: [day, month],
      spike: { flagged: false, hourTokens: 10, normalTokens: 10 },
    })
    const after = await scrape()
    expect(after.text).toContain('# TYPE edge_proxy_keys_usage_spike gauge')
    expect(after.text).toContain('# TYPE edge_proxy_key_usage_spike gauge')
    expect(after.text).toContain('# TYPE edge_proxy_key_budget_used_ratio gauge')
    expect(after.value('edge_proxy_keys_usage_spike') - before.value('edge_proxy_keys_usage_spike')).toBe(1)
    expect(after.value(`edge_proxy_key_usage_spike{key_id="${flagged}"}`)).toBe(1)
    expect(after.text).not.toContain(`edge_proxy_key_usage_spike{key_id="${near}"}`)
    expect(after.value(`edge_proxy_key_budget_used_ratio{key_id="${near}",period="day"}`)).toBe(0.999)
    expect(after.value(`edge_proxy_key_budget_used_ratio{key_id="${near}",period="month"}`)).toBe(0.25)
    // The flag cleared: the key's series goes, and the count with it.
    await aggregator().reportKey({
      keyId: flagged,
      at: now + 1,
      budgets: [],
      spike: { flagged: false, hourTokens: 900, normalTokens: 1_000 },
    })
    const cleared = await scrape()
    expect(cleared.text).not.toContain(`edge_proxy_key_usage_spike{key_id="${flagged}"}`)
    expect(cleared.value('edge_proxy_keys_usage_spike')).toBe(before.value('edge_proxy_keys_usage_spike'))
  })

  it('is for admin keys only', async () => {
    expect((await callWorker('/metrics')).status).toBe(403)
  })
})
