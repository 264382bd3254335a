// vLLM v0.20.2, the emulator's default release, where it differs from v0.11.0 (README "Releases"):
// each test cites the v0.20.2 file and function it follows, and checks v0.11.0's answer beside it
// where the gateway relies on the difference.

import { describe, expect, it } from 'vitest'
import { mergeOptions, defaultOptions } from '../../gpu-backend/emulator/options.ts'
import { countChatPromptTokens } from '../../gpu-backend/emulator/tokenizer.ts'
import { chatBody, emulatorFor, emulatorV0110, MODEL, post } from './helpers.ts'
import { events, payloads } from '../support/sse.ts'

const DEAD_MESSAGE = 'EngineCore encountered an issue. See stack trace (above) for the root cause.'
const DONE = 'data: [DONE]\n\n'
const QUESTION = [{ role: 'user', content: 'What is 2+2?' }]

describe('vLLM v0.20.2 (the default release)', () => {
  it('is the default, answers /version with it, and makes the reasoning field follow the release unless set', async () => {
    expect(defaultOptions()).toMatchObject({ vllmVersion: '0.20.2', reasoningField: 'reasoning', enableRequestIdHeaders: false })
    expect(mergeOptions(defaultOptions(), { vllmVersion: '0.11.0' }).reasoningField).toBe('reasoning_content')
    expect(mergeOptions(defaultOptions(), { vllmVersion: '0.11.0', reasoningField: 'both' }).reasoningField).toBe('both')
    const both = mergeOptions(defaultOptions(), { reasoningField: 'both' })
    expect(mergeOptions(both, { vllmVersion: '0.11.0' }).reasoningField).toBe('both')
    const emulator = await emulatorFor()
    expect(await (await fetch(`${emulator.url}/version`)).json()).toEqual({ version: '0.20.2' })
    emulator.configure({ vllmVersion: '0.11.0' })
    expect(emulator.options.reasoningField).toBe('reasoning_content')
    expect(await (await fetch(`${emulator.url}/version`)).json()).toEqual({ version: '0.11.0' })
  })

  it('streams reasoning as `reasoning` only, never reasoning_content, and so answers stream: false (openai/engine/protocol.py DeltaMessage)', async () => {
    const emulator = await emulatorFor()
    const text = await (
      await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=2 content_tokens=2', { stream: true }))
    ).text()
    expect(text).not.toContain('reasoning_content')
    const deltas = payloads(text).flatMap((chunk) => (chunk.choices as { delta: Record<string, unknown> }[]).map((c) => c.delta))
    expect(deltas.filter((delta) => typeof delta.reasoning === 'string')).toHaveLength(2)
    const body = await (await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=2 content_tokens=2'))).text()
    expect(body).not.toContain('reasoning_content')
    expect(JSON.parse(body).choices[0].message.reasoning).toEqual(expect.any(String))
  })

  it('ends a stream whose engine died with the 500 InternalServerError event (entrypoints/utils.py create_error_response), and refuses new requests with the 500 InternalServerError', async () => {
    const emulator = await emulatorFor({ deadShutdownMs: null })
    const killed = await (await post(emulator, '/v1/chat/completions', chatBody('fault=dead_after:2', { stream: true }))).text()
    expect(events(killed).slice(-2)).toEqual([
      `data: {"error": {"message": "${DEAD_MESSAGE}", "type": "InternalServerError", "param": null, "code": 500}}\n\n`,
      DONE,
    ])
    for (const stream of [true, false]) {
      const response = await post(emulator, '/v1/chat/completions', chatBody('', { stream }))
      expect(response.status).toBe(500)
      expect(await response.text()).toBe(`{"error":{"message":"${DEAD_MESSAGE}","type":"InternalServerError","param":null,"code":500}}`)
    }
  })

  it('states a prompt and max_tokens over the context in renderers/params.py _token_len_check words, param input_tokens, "at least" for a truncated prompt', async () => {
    const emulator = await emulatorFor({ maxModelLen: 64 })
    const prompt = countChatPromptTokens(QUESTION)
    const response = await post(emulator, '/v1/chat/completions', { model: MODEL, messages: QUESTION, max_tokens: 60 })
    expect(response.status).toBe(400)
    // The tokenizer stops at max_input_tokens + 1 = 64 - 60 + 1 (TokenizeParams.get_encode_kwargs).
    expect(prompt).toBeGreaterThan(5)
    expect(await response.json()).toEqual({
      error: {
        message:
          "This model's maximum context length is 64 tokens. However, you requested 60 output tokens and your prompt contains at least 5 input tokens, " +
          'for a total of at least 65 tokens. Please reduce the length of the input prompt or the number of requested output tokens.',
        type: 'BadRequestError',
        param: 'input_tokens',
        code: 400,
      },
    })
    // Token ids are not truncated: the exact count.
    const ids = await post(emulator, '/v1/completions', { model: MODEL, prompt: Array.from({ length: 10 }, () => 1), max_tokens: 60 })
    expect(((await ids.json()) as { error: { message: string } }).error.message).toContain(
      'you requested 60 output tokens and your prompt contains 10 input tokens, for a total of 70 tokens.',
    )
  })

  it('refuses max_tokens above the context before rendering (TokenizeParams.__post_init__), and a prompt that fills it from SamplingParams', async () => {
    const emulator = await emulatorFor({ maxModelLen: 64 })
    const over = await post(emulator, '/v1/chat/completions', { model: MODEL, messages: QUESTION, max_completion_tokens: 100 })
    expect(await over.json()).toEqual({
      error: {
        message: 'max_completion_tokens=100 cannot be greater than max_model_len=max_total_tokens=64. Please request fewer output tokens.',
        type: 'BadRequestError',
        param: 'max_completion_tokens',
        code: 400,
      },
    })
    const full = await emulatorFor({ maxModelLen: countChatPromptTokens(QUESTION) })
    const filled = await post(full, '/v1/chat/completions', { model: MODEL, messages: QUESTION })
    expect(await filled.json()).toEqual({
      error: { message: 'max_tokens must be at least 1, got 0.', type: 'BadRequestError', param: 'max_tokens', code: 400 },
    })
  })

  it('sends no usage chunk for stream_options {} (StreamOptions.include_usage = False; should_include_usage), v0.11.0 does', async () => {
    for (const [emulator, usage] of [
      [await emulatorFor(), false],
      [await emulatorV0110(), true],
    ] as const) {
      const text = await (
        await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=1 content_tokens=1', { stream: true, stream_options: {} }))
      ).text()
      expect(payloads(text).some((chunk) => 'usage' in chunk)).toBe(usage)
    }
    const emulator = await emulatorFor()
    const options = { include_usage: false, continuous_usage_stats: true }
    const text = await (
      await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=1', { stream: true, stream_options: options }))
    ).text()
    expect(payloads(text).some((chunk) => 'usage' in chunk)).toBe(false)
  })

  it('echoes X-Request-Id on every response only with --enable-request-id-headers (XRequestIdMiddleware), in both releases', async () => {
    for (const vllmVersion of ['0.20.2', '0.11.0'] as const) {
      const off = await emulatorFor({ vllmVersion })
      expect((await fetch(`${off.url}/health`, { headers: { 'x-request-id': 'abc' } })).headers.get('x-request-id')).toBeNull()
      const on = await emulatorFor({ vllmVersion, enableRequestIdHeaders: true, apiKey: 'k' })
      const chat = await post(on, '/v1/chat/completions', chatBody(), { headers: { 'x-request-id': 'abc', authorization: 'Bearer k' } })
      expect(chat.headers.get('x-request-id')).toBe('abc')
      expect(((await chat.json()) as { id: string }).id).toBe('chatcmpl-abc')
      const refused = await post(on, '/v1/chat/completions', chatBody())
      expect(refused.status).toBe(401)
      expect(refused.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/)
    }
  })

  it('runs two requests with one X-Request-Id side by side (v1/engine/input_processor.py assign_request_id), where v0.11.0 refuses the second', async () => {
    const emulator = await emulatorFor()
    const headers = { 'x-request-id': 'same' }
    const [first, second] = await Promise.all(
      [0, 1].map(async () =>
        (await post(emulator, '/v1/chat/completions', chatBody('itl_ms=5 reasoning_tokens=5', { stream: true }), { headers })).text(),
      ),
    )
    for (const text of [first, second]) expect(text).not.toContain('already running')
  })

  it('serves v0.20.2 metric names: no vllm:time_per_output_token_seconds, new waiting-by-reason and sleep-state gauges (v1/metrics/loggers.py)', async () => {
    const emulator = await emulatorFor()
    const text = await (await fetch(`${emulator.url}/metrics`)).text()
    expect(text).not.toContain('vllm:time_per_output_token_seconds')
    expect(text).not.toContain('vllm:gpu_cache_usage_perc')
    for (const name of [
      'vllm:num_requests_running',
      'vllm:num_requests_waiting',
      'vllm:kv_cache_usage_perc',
      'vllm:inter_token_latency_seconds',
    ]) {
      expect(text).toContain(`# TYPE ${name} `)
    }
    expect(text).toContain(
      'vllm:num_requests_waiting_by_reason{model_name="deepseek-r1-distill-qwen-1.5b",engine="0",reason="capacity"} 0.0',
    )
    expect(text).toContain('vllm:engine_sleep_state{model_name="deepseek-r1-distill-qwen-1.5b",engine="0",sleep_state="awake"} 1.0')
    const old = await emulatorV0110()
    expect(await (await fetch(`${old.url}/metrics`)).text()).toContain('vllm:time_per_output_token_seconds')
  })
})
