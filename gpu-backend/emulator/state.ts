// Everything one emulator instance remembers, shared by its route handlers.

import { ApiLoop } from './api-loop.ts'
import { EngineLife } from './engine.ts'
import type { EmulatorOptions } from './options.ts'
import { EventTimes, PrefixCache, RequestLog } from './records.ts'
import { Scheduler } from './scheduler.ts'
import { Telemetry } from './stats.ts'

export type EmulatorState = {
  options: EmulatorOptions
  telemetry: Telemetry
  requestLog: RequestLog
  eventTimes: EventTimes
  prefixCache: PrefixCache
  /** Running and waiting generations: --max-num-seqs, prefill and decode costs. */
  scheduler: Scheduler
  /** Cancel functions of the generations whose timers are running. */
  active: Set<() => void>
  /** Alive or dead (EngineDeadError): the `engineDead` option and the `dead_after` fault kill it. */
  engine: EngineLife
  /** Unix seconds at start: the `created` of the model card, as vLLM fixes it at startup. */
  startedAt: number
  /** vLLM's API-server event loop: apiServerLagMs and the chat template's render hold it (api-loop.ts). */
  apiLoop: ApiLoop
}

const REQUEST_LOG_SIZE = 100
const EVENT_TIMES_RESPONSES = 2000

export function createState(options: EmulatorOptions): EmulatorState {
  const telemetry = new Telemetry()
  // Both read the options in force at each use, so POST /emulator/config applies at once.
  const prefixCache = new PrefixCache(() => state.options.prefixCacheTokens)
  const state: EmulatorState = {
    options,
    telemetry,
    requestLog: new RequestLog(REQUEST_LOG_SIZE),
    eventTimes: new EventTimes(EVENT_TIMES_RESPONSES),
    prefixCache,
    scheduler: new Scheduler(() => state.options, telemetry, prefixCache),
    active: new Set(),
    engine: new EngineLife(),
    startedAt: Math.floor(Date.now() / 1000),
    apiLoop: new ApiLoop(),
  }
  state.engine.onDeath = () => {
    state.options = { ...state.options, engineDead: true }
    // Requests still waiting for a slot are in the engine too: each gets the error now.
    state.scheduler.admitAllNow()
  }
  return state
}

/** After an options change: the `engineDead` option kills or revives the engine. */
export function syncEngine(state: EmulatorState): void {
  if (state.options.engineDead && !state.engine.dead) state.engine.kill(state.options.deadShutdownMs)
  else if (!state.options.engineDead && state.engine.dead) state.engine.revive()
}

/** POST /emulator/reset: counters, histograms and memories back to zero; running and waiting work continues. */
export function resetState(state: EmulatorState): void {
  state.telemetry.reset()
  state.requestLog.clear()
  state.eventTimes.clear()
  state.prefixCache.clear()
  state.scheduler.reset()
}
