// Per-emulator memories of the engine's request bookkeeping:
// - the ids of the requests the engine is running. vLLM's OutputProcessor.add_request refuses an id
//   it already tracks with ValueError "Request id ... already running." (v1/engine/output_processor.py),
//   and the id comes from the client's X-Request-Id header when there is one (serving_engine.py
//   _base_request_id), so two concurrent requests with one header collide;
// - the server load behind GET /load (api_server.py get_server_load_metrics), which
//   --enable-server-load-tracking counts per generation request in flight (entrypoints/utils.py
//   load_aware_call) and is 0 otherwise.

import type { EmulatorState } from './state.ts'

export type EngineBook = { running: Set<string>; serverLoad: number }

const books = new WeakMap<EmulatorState, EngineBook>()

export function engineBook(state: EmulatorState): EngineBook {
  let book = books.get(state)
  if (book === undefined) {
    book = { running: new Set(), serverLoad: 0 }
    books.set(state, book)
  }
  return book
}
