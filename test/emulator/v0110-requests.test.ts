// Request checks as vLLM v0.11.0 makes them (protocol.py validators, serving_engine.py
// _validate_input, utils.py get_max_tokens, sampling_params.py _verify_args, v1/engine/processor.py).

import { describe, expect, it } from 'vitest'
import type { Emulator } from '../../gpu-backend/emulator/server.ts'
import { countChatPromptTokens } from '../../gpu-backend/emulator/tokenizer.ts'
import { chatBody, emulatorV0110, MODEL, post } from './helpers.ts'
import { payloads } from '../support/sse.ts'

type ErrorJson = { error: { message: string; type: string; code: number; param: null } }
type Logged = { body: unknown; vllm?: { requestId: string; samplingParams: Record<string, unknown>; ignoredFields: string[] } }

async function chat(emulator: Emulator, extra: Record<string, unknown>, directive = 'reasoning_tokens=0 content_tokens=1') {
  const response = await post(emulator, '/v1/chat/completions', chatBody(directive, extra))
  return { status: response.status, text: await response.text() }
}

async function errorOf(emulator: Emulator, extra: Record<string, unknown>): Promise<ErrorJson['error'] & { status: number }> {
  const { status, text } = await chat(emulator, extra)
  return { status, ...(JSON.parse(text) as ErrorJson).error }
}

async function lastLogged(emulator: Emulator): Promise<Logged> {
  const entries = (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as Logged[]
  return entries.at(-1) ?? { body: null }
}

const longText = (words: number) => ' hello'.repeat(words)

describe('max_tokens and the context length (v0.11.0)', () => {
  it('gives a request without max_tokens the rest of the context, however long its prompt', async () => {
    const emulator = await emulatorV0110({ maxModelLen: 64 })
    const messages = [{ role: 'user', content: `${longText(40)} [emulator reasoning_tokens=0 content_tokens=1]` }]
    const response = await post(emulator, '/v1/chat/completions', { model: MODEL, messages })
    expect(response.status).toBe(200)
    const prompt = countChatPromptTokens(messages)
    expect((await lastLogged(emulator)).vllm?.samplingParams.max_tokens).toBe(64 - prompt)
  })

  it('refuses a prompt of max_model_len tokens with the input-length message, ending in " None" for chat', async () => {
    const emulator = await emulatorV0110({ maxModelLen: 64 })
    const messages = [{ role: 'user', content: longText(59) }]
    const prompt = countChatPromptTokens(messages)
    expect(prompt).toBe(64)
    const response = await post(emulator, '/v1/chat/completions', { model: MODEL, messages })
    expect(response.status).toBe(400)
    const message =
      "This model's maximum context length is 64 tokens. However, your request has 64 input tokens. Please reduce the length of the input messages. None"
    expect(await response.text()).toBe(JSON.stringify({ error: { message, type: 'BadRequestError', param: null, code: 400 } }))
  })

  it('refuses prompt + max_tokens over the context with the "too large" message stating the room', async () => {
    const emulator = await emulatorV0110({ maxModelLen: 64 })
    const error = await errorOf(emulator, { max_tokens: 60 })
    const prompt = countChatPromptTokens(chatBody('reasoning_tokens=0 content_tokens=1').messages as { role: string; content: string }[])
    expect(error.message).toBe(
      `'max_tokens' or 'max_completion_tokens' is too large: 60. This model's maximum context length is 64 tokens and your request has ${prompt} input tokens (60 > 64 - ${prompt}). None`,
    )
  })

  it('refuses a completion prompt longer than max_model_len - max_tokens with the renderer\'s message, without " None"', async () => {
    const emulator = await emulatorV0110({ maxModelLen: 64 })
    const response = await post(emulator, '/v1/completions', { model: MODEL, prompt: longText(50) })
    expect(((await response.json()) as ErrorJson).error.message).toBe(
      "This model's maximum context length is 48 tokens. However, your request has 51 input tokens. Please reduce the length of the input messages.",
    )
  })

  it('refuses max_tokens 0 from SamplingParams, and lets max_completion_tokens 0 fall through to the default', async () => {
    const emulator = await emulatorV0110()
    expect(await errorOf(emulator, { max_tokens: 0 })).toMatchObject({
      status: 400,
      type: 'BadRequestError',
      message: 'max_tokens must be at least 1, got 0.',
    })
    expect((await chat(emulator, { max_completion_tokens: 0 })).status).toBe(200)
  })
})

describe('parameters v0.11.0 refuses', () => {
  it('refuses top_logprobs without logprobs with the check_logprobs text as a 400 Bad Request', async () => {
    const error = await errorOf(await emulatorV0110(), { top_logprobs: 3 })
    expect(error).toMatchObject({ status: 400, type: 'Bad Request', code: 400 })
    expect(error.message).toBe(
      "[{'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, when using `top_logprobs`, `logprobs` must be set to true.'}]",
    )
  })

  it('refuses top_p 0 with "top_p must be in (0, 1], got 0.0." as a BadRequestError (pydantic made it a float)', async () => {
    const error = await errorOf(await emulatorV0110(), { top_p: 0 })
    expect(error).toMatchObject({ status: 400, type: 'BadRequestError', message: 'top_p must be in (0, 1], got 0.0.' })
  })

  it("refuses wrong JSON types with pydantic's error list, every field at once", async () => {
    const error = await errorOf(await emulatorV0110(), { temperature: 'hot', max_tokens: 1.5, min_tokens: null })
    expect(error.type).toBe('Bad Request')
    expect(error.message).toBe(
      "[{'type': 'int_from_float', 'loc': ('body', 'max_tokens'), 'msg': 'Input should be a valid integer, got a number with a fractional part'}, " +
        "{'type': 'float_parsing', 'loc': ('body', 'temperature'), 'msg': 'Input should be a valid number, unable to parse string as a number'}, " +
        "{'type': 'int_type', 'loc': ('body', 'min_tokens'), 'msg': 'Input should be a valid integer'}]",
    )
  })

  it("accepts numeric strings where pydantic's lax mode does", async () => {
    const emulator = await emulatorV0110()
    expect((await chat(emulator, { temperature: '0.5', top_k: '20' })).status).toBe(200)
    expect((await lastLogged(emulator)).vllm?.samplingParams).toMatchObject({ temperature: 0.5, top_k: 20 })
  })

  it('refuses tools with automatic tool choice without --enable-auto-tool-choice', async () => {
    const tools = [{ type: 'function', function: { name: 'add', parameters: { type: 'object' } } }]
    const error = await errorOf(await emulatorV0110(), { tools })
    expect(error).toMatchObject({
      status: 400,
      type: 'BadRequestError',
      message: '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
    })
  })

  it('refuses an empty cache_salt', async () => {
    const error = await errorOf(await emulatorV0110(), { cache_salt: '' })
    expect(error.message).toContain("Value error, Parameter 'cache_salt' must be a non-empty string if provided.")
  })

  it('refuses a response_format of an unknown type with the errors of both union members', async () => {
    const error = await errorOf(await emulatorV0110(), { response_format: { type: 'yaml' } })
    expect(error.message).toContain(
      "'loc': ('body', 'response_format', 'ResponseFormat', 'type'), 'msg': \"Input should be 'text', 'json_object' or 'json_schema'\"",
    )
    expect(error.message).toContain("('body', 'response_format', 'StructuralTagResponseFormat', 'structures')")
  })

  it("answers response_format json_schema without json_schema with the 500 of to_sampling_params' failed assert", async () => {
    const error = await errorOf(await emulatorV0110(), { response_format: { type: 'json_schema' } })
    expect(error).toMatchObject({ status: 500, type: 'Internal Server Error', message: '', code: 500 })
  })

  it("refuses logprobs beyond 20 inside the stream after the 200, as the engine's Processor does", async () => {
    const { status, text } = await chat(await emulatorV0110(), { stream: true, logprobs: true, top_logprobs: 21 })
    expect(status).toBe(200)
    expect(text).toBe(
      'data: {"error": {"message": "Requested sample logprobs of 21, which is greater than max allowed: 20", "type": "BadRequestError", "param": null, "code": 400}}\n\n' +
        'data: [DONE]\n\n',
    )
  })

  it('refuses a logit_bias token id outside the vocabulary as a 400 for stream: false', async () => {
    const error = await errorOf(await emulatorV0110(), { logit_bias: { '151936': 5 } })
    expect(error).toMatchObject({
      status: 400,
      message: 'token_id(s) [151936] in logit_bias contain out-of-vocab token ids. Vocabulary size: 151936',
    })
  })
})

describe('parameters v0.11.0 accepts', () => {
  it("records the SamplingParams the request makes, with the model's generation_config defaults", async () => {
    const emulator = await emulatorV0110()
    const extra = {
      top_k: 40,
      min_p: 0.05,
      repetition_penalty: 1.1,
      logit_bias: { '100': 150 },
      min_tokens: 1,
      seed: 7,
      skip_special_tokens: false,
      priority: 3,
      cache_salt: 'tenant-a',
      structured_outputs: { regex: '[0-9]+' },
    }
    expect((await chat(emulator, extra)).status).toBe(200)
    expect((await lastLogged(emulator)).vllm?.samplingParams).toMatchObject({
      temperature: 0.6,
      top_p: 0.95,
      top_k: 40,
      min_p: 0.05,
      repetition_penalty: 1.1,
      logit_bias: { '100': 100 },
      min_tokens: 1,
      seed: 7,
      skip_special_tokens: false,
      priority: 3,
      cache_salt: 'tenant-a',
      structured_outputs: { regex: '[0-9]+' },
    })
  })

  it('accepts response_format json_object and json_schema and records their structured-output constraint', async () => {
    const emulator = await emulatorV0110()
    expect((await chat(emulator, { response_format: { type: 'json_object' } })).status).toBe(200)
    expect((await lastLogged(emulator)).vllm?.samplingParams.structured_outputs).toEqual({ json_object: true })
    const schema = { type: 'object', properties: { x: { type: 'number' } } }
    expect((await chat(emulator, { response_format: { type: 'json_schema', json_schema: { name: 'answer', schema } } })).status).toBe(200)
    expect((await lastLogged(emulator)).vllm?.samplingParams.structured_outputs).toEqual({ json: schema })
  })

  it("keeps prefix-cache hits apart per cache_salt, which salts the first block's hash", async () => {
    const emulator = await emulatorV0110()
    for (const salt of ['tenant-a', 'tenant-b', 'tenant-a']) expect((await chat(emulator, { cache_salt: salt })).status).toBe(200)
    expect(emulator.load().prefixHitRequests).toBe(1)
  })

  it("refuses a seed outside the signed 64-bit range with pydantic's bound error", async () => {
    const error = await errorOf(await emulatorV0110(), { seed: 2 ** 64 })
    expect(error.message).toBe(
      "[{'type': 'less_than_equal', 'loc': ('body', 'seed'), 'msg': 'Input should be less than or equal to 9223372036854775807'}]",
    )
  })

  it('accepts unknown fields and records them as ignored, as OpenAIBaseModel logs and drops them', async () => {
    const emulator = await emulatorV0110()
    expect((await chat(emulator, { frobnicate: true, top_k: 5 })).status).toBe(200)
    expect((await lastLogged(emulator)).vllm?.ignoredFields).toEqual(['frobnicate'])
  })
})

describe('stream_options (v0.11.0 defaults)', () => {
  it('sends the usage chunk for stream_options {}: include_usage defaults to true', async () => {
    const { text } = await chat(await emulatorV0110(), { stream: true, stream_options: {} })
    expect(payloads(text).at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 3 } })
  })

  it('sends no usage chunk without stream_options', async () => {
    const { text } = await chat(await emulatorV0110(), { stream: true })
    expect(payloads(text).some((chunk) => 'usage' in chunk)).toBe(false)
  })

  it('refuses non-empty stream_options without stream: true, and lets {} pass (Python truthiness)', async () => {
    const emulator = await emulatorV0110()
    const error = await errorOf(emulator, { stream_options: { include_usage: true } })
    expect(error.message).toBe(
      "[{'type': 'value_error', 'loc': ('body',), 'msg': 'Value error, Stream options can only be defined when `stream=True`.'}]",
    )
    expect((await chat(emulator, { stream_options: {} })).status).toBe(200)
  })
})
