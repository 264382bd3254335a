import { describe, expect, it } from 'vitest'
import { chatBody, emulatorV0110, MODEL, post } from './helpers.ts'

const KEY = 'sk-emulator-test'
const bearer = { authorization: `Bearer ${KEY}` }

describe('authentication', () => {
  it('answers /v1 requests without the right bearer key with 401 {"error":"Unauthorized"}', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: KEY }]
    for (const headers of attempts) {
      const response = await post(emulator, '/v1/chat/completions', chatBody(), { headers })
      expect(response.status).toBe(401)
      expect(await response.text()).toBe('{"error":"Unauthorized"}')
    }
    const models = await fetch(`${emulator.url}/v1/models`)
    expect(models.status).toBe(401)
  })

  it('serves the key holder', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    const response = await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'), { headers: bearer })
    expect(response.status).toBe(200)
  })

  it('leaves /health, /metrics and /emulator/* open', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    const health = await fetch(`${emulator.url}/health`)
    expect(health.status).toBe(200)
    expect(await health.text()).toBe('')
    expect((await fetch(`${emulator.url}/metrics`)).status).toBe(200)
    expect((await fetch(`${emulator.url}/emulator/stats`)).status).toBe(200)
  })
})

describe('other vLLM endpoints', () => {
  it('reports an unhealthy engine with 503 on /health', async () => {
    const emulator = await emulatorV0110()
    emulator.configure({ healthy: false })
    expect((await fetch(`${emulator.url}/health`)).status).toBe(503)
  })

  it("lists the served model in vLLM's /v1/models shape", async () => {
    const emulator = await emulatorV0110({ maxModelLen: 8192 })
    const text = await (await fetch(`${emulator.url}/v1/models`)).text()
    expect(text).toMatch(
      new RegExp(
        `^\\{"object":"list","data":\\[\\{"id":"${MODEL}","object":"model","created":\\d+,"owned_by":"vllm",` +
          '"root":"deepseek-ai/DeepSeek-R1-Distill-Qwen-1\\.5B","parent":null,"max_model_len":8192,' +
          '"permission":\\[\\{"id":"modelperm-[0-9a-f]+","object":"model_permission","created":\\d+,"allow_create_engine":false,' +
          '"allow_sampling":true,"allow_logprobs":true,"allow_search_indices":false,"allow_view":true,"allow_fine_tuning":false,' +
          '"organization":"\\*","group":null,"is_blocking":false\\}\\]\\}\\]\\}$',
      ),
    )
  })

  it("exposes Prometheus metrics with vLLM names, labels and this process's counts", async () => {
    const emulator = await emulatorV0110()
    await (await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=2 content_tokens=2'))).text()
    const response = await fetch(`${emulator.url}/metrics`)
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    const text = await response.text()
    const labels = `{model_name="${MODEL}",engine="0"}`
    const stats = emulator.stats()
    expect(text).toContain(`vllm:num_requests_running${labels} 0.0\n`)
    expect(text).toContain(`vllm:num_requests_waiting${labels} 0.0\n`)
    expect(text).toContain(`vllm:kv_cache_usage_perc${labels} 0.0\n`)
    expect(text).toContain(`vllm:prompt_tokens_total${labels} ${stats.promptTokens}.0\n`)
    expect(text).toContain(`vllm:generation_tokens_total${labels} 6.0\n`)
    expect(text).toContain(`vllm:request_success_total{model_name="${MODEL}",engine="0",finished_reason="stop"} 1.0\n`)
    expect(text).toContain(`vllm:time_to_first_token_seconds_count${labels} 1.0\n`)
    expect(text).toContain(`vllm:time_to_first_token_seconds_bucket{model_name="${MODEL}",engine="0",le="+Inf"} 1.0\n`)
    expect(text).toContain(`vllm:time_per_output_token_seconds_count${labels} 5.0\n`)
    expect(text).toContain(`vllm:e2e_request_latency_seconds_count${labels} 1.0\n`)
    for (const name of ['vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total', 'vllm:request_queue_time_seconds_count']) {
      expect(text).toContain(`${name}${labels} `)
    }
    expect(text).toContain('# TYPE vllm:time_to_first_token_seconds histogram\n')
  })

  it('counts a repeated prompt as prefix-cache hits', async () => {
    const emulator = await emulatorV0110()
    for (let i = 0; i < 2; i++) await (await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'))).text()
    const text = await (await fetch(`${emulator.url}/metrics`)).text()
    const hits = /vllm:prefix_cache_hits_total\{[^}]*\} (\d+)\.0/.exec(text)?.[1]
    expect(Number(hits)).toBe(emulator.stats().promptTokens / 2)
  })

  it('answers unknown paths like FastAPI', async () => {
    const emulator = await emulatorV0110()
    const response = await fetch(`${emulator.url}/v1/nothing`)
    expect(response.status).toBe(404)
    expect(await response.text()).toBe('{"detail":"Not Found"}')
  })
})

describe('emulator control endpoints', () => {
  it('records requests with the authorization value redacted', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    await (await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'), { headers: { ...bearer, 'x-trace': 'abc' } })).text()
    await (await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'))).text()
    const recorded = (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as {
      method: string
      path: string
      headers: Record<string, string>
      body: unknown
    }[]
    expect(recorded).toHaveLength(2)
    expect(recorded[0]).toMatchObject({ method: 'POST', path: '/v1/chat/completions', body: chatBody('content_tokens=1') })
    expect(recorded[0]?.headers.authorization).toBe('<redacted>')
    expect(recorded[0]?.headers['x-trace']).toBe('abc')
    expect(JSON.stringify(recorded)).not.toContain(KEY)
    expect(recorded[1]?.headers).not.toHaveProperty('authorization')
  })

  it('changes options at runtime with POST /emulator/config and rejects unknown ones', async () => {
    const emulator = await emulatorV0110()
    const changed = await post(emulator, '/emulator/config', { contentTokens: 3, errorFormat: 'legacy' })
    expect(changed.status).toBe(200)
    expect(await changed.json()).toMatchObject({ contentTokens: 3, errorFormat: 'legacy', port: emulator.port })
    expect(emulator.options.contentTokens).toBe(3)
    const typo = await post(emulator, '/emulator/config', { contentToken: 3 })
    expect(typo.status).toBe(400)
    expect(await typo.text()).toContain('unknown option')
    const badFault = await post(emulator, '/emulator/config', { fault: 'explode' })
    expect(badFault.status).toBe(400)
  })

  it('zeroes counters and recorded requests on POST /emulator/reset', async () => {
    const emulator = await emulatorV0110()
    await (await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'))).text()
    expect(emulator.stats()).toMatchObject({ requests: 1, completed: 1 })
    const reset = await post(emulator, '/emulator/reset', {})
    expect(reset.status).toBe(200)
    expect(emulator.stats()).toEqual({
      requests: 0,
      streamsStarted: 0,
      completed: 0,
      aborted: 0,
      faulted: 0,
      inFlight: 0,
      maxInFlight: 0,
      tokensGenerated: 0,
      promptTokens: 0,
      lastAbortAt: null,
    })
    expect(await (await fetch(`${emulator.url}/emulator/requests`)).json()).toEqual([])
  })

  it('tracks the in-flight high-water mark', async () => {
    const emulator = await emulatorV0110({ ttftMs: 50 })
    const responses = await Promise.all([1, 2, 3].map(() => post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'))))
    await Promise.all(responses.map((response) => response.text()))
    expect(emulator.stats()).toMatchObject({ requests: 3, completed: 3, inFlight: 0, maxInFlight: 3 })
  })
})
