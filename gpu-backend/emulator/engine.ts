// The engine's life: alive, or dead as after an EngineCore crash in vLLM v0.11.0 (v0.20.2: the
// same life; only the error types differ, see engineDeadStreamError / engineDeadHttpError).
// - AsyncLLM's output handler hands EngineDeadError to every request's queue
//   (vllm/v1/engine/async_llm.py, output_handler / generate's `except EngineDeadError`): each
//   running generation fails at once, a stream with the error event, stream: false with a 500.
// - New requests: create_chat_completion / create_completion raise engine_client.dead_error
//   right after the model check (serving_chat.py, serving_completion.py), which api_server.py
//   turns into HTTPException(500) whose type is the phrase "Internal Server Error".
// - GET /health: check_health raises EngineDeadError, answered 503 (api_server.py health).
// - The port closes once the launcher's watchdog sees the dead engine: watchdog_loop polls every
//   5 s and terminate_if_errored sets uvicorn's should_exit (vllm/entrypoints/launcher.py),
//   unless VLLM_KEEP_ALIVE_ON_ENGINE_DEATH. The delay is `deadShutdownMs` here.

import type { ApiError } from './errors.ts'
import type { VllmVersion } from './options.ts'

/** vllm/v1/engine/exceptions.py EngineDeadError's message. */
export const ENGINE_DEAD_MESSAGE = 'EngineCore encountered an issue. See stack trace (above) for the root cause.'

/**
 * The error event a stream gets when the engine dies under it. v0.11.0: every exception in the
 * stream generators is sent with create_streaming_error_response's defaults, BadRequestError / 400
 * (serving_chat.py chat_completion_stream_generator's `except Exception`). v0.20.2: the same
 * `except Exception` (openai/chat_completion/serving.py), but create_error_response maps the
 * exception's class (entrypoints/utils.py): EngineDeadError is none of the mapped ones, so
 * InternalServerError / 500.
 */
export function engineDeadStreamError(version: VllmVersion): ApiError {
  return version === '0.11.0'
    ? { status: 400, type: 'BadRequestError', message: ENGINE_DEAD_MESSAGE }
    : { status: 500, type: 'InternalServerError', message: ENGINE_DEAD_MESSAGE }
}

/**
 * Before streaming, or for stream: false. v0.11.0: api_server.py wraps the exception in
 * HTTPException(500), whose type is the phrase "Internal Server Error" (http_exception_handler).
 * v0.20.2: render_chat_request raises engine_client.dead_error (openai/chat_completion/serving.py),
 * and the full generator lets it through; engine_error_handler (openai/server_utils.py) answers
 * create_error_response(exc): InternalServerError, 500.
 */
export function engineDeadHttpError(version: VllmVersion): ApiError {
  return { status: 500, type: version === '0.11.0' ? 'Internal Server Error' : 'InternalServerError', message: ENGINE_DEAD_MESSAGE }
}

export class EngineLife {
  dead = false
  private readonly watchers = new Set<() => void>()
  private shutdownTimer: NodeJS.Timeout | undefined
  /** Closes the listening port (server.ts). */
  onShutdown: (() => void) | null = null
  /** Starts the waiting requests so each can fail (state.ts). */
  onDeath: (() => void) | null = null

  /** Calls `fail` when the engine dies; returns the function that stops watching. */
  watch(fail: () => void): () => void {
    this.watchers.add(fail)
    return () => this.watchers.delete(fail)
  }

  /** The engine dies: running generations fail now, the port closes after `shutdownMs` (null: never). */
  kill(shutdownMs: number | null): void {
    if (this.dead) return
    this.dead = true
    for (const fail of [...this.watchers]) fail()
    this.watchers.clear()
    this.onDeath?.()
    if (shutdownMs !== null) this.shutdownTimer = setTimeout(() => this.onShutdown?.(), shutdownMs)
  }

  /** Emulator only: a live engine again (if the port is still open). */
  revive(): void {
    this.dead = false
    this.stop()
  }

  /** The emulator is closing: no shutdown timer left behind. */
  stop(): void {
    clearTimeout(this.shutdownTimer)
  }
}

/**
 * The pre-stream answer to a new generation request while the engine is dead, or null. The dead
 * check comes after the schema (FastAPI) and the model check but before the serving layer's
 * own 400s (context length, ...), so those become the 500 too.
 */
export function deadEngineRefusal(engine: EngineLife, failure: ApiError | null, version: VllmVersion): ApiError | null {
  if (!engine.dead) return null
  return failure === null || failure.type === 'BadRequestError' ? engineDeadHttpError(version) : null
}
