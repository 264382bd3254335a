// Everything one emulator instance remembers, shared by its route handlers.

import type { EmulatorOptions } from './options.ts'
import { EventTimes, PrefixCache, RequestLog } from './records.ts'
import { Telemetry } from './stats.ts'

export type EmulatorState = {
  options: EmulatorOptions
  telemetry: Telemetry
  requestLog: RequestLog
  eventTimes: EventTimes
  prefixCache: PrefixCache
  /** Cancel functions of the generations whose timers are running. */
  active: Set<() => void>
  /** Unix seconds at start: the `created` of the model card, as vLLM fixes it at startup. */
  startedAt: number
}

const REQUEST_LOG_SIZE = 100
const EVENT_TIMES_RESPONSES = 2000
const PREFIX_CACHE_ENTRIES = 4096

export function createState(options: EmulatorOptions): EmulatorState {
  return {
    options,
    telemetry: new Telemetry(),
    requestLog: new RequestLog(REQUEST_LOG_SIZE),
    eventTimes: new EventTimes(EVENT_TIMES_RESPONSES),
    prefixCache: new PrefixCache(PREFIX_CACHE_ENTRIES),
    active: new Set(),
    startedAt: Math.floor(Date.now() / 1000),
  }
}

/** POST /emulator/reset: counters, histograms and memories back to zero; running work continues. */
export function resetState(state: EmulatorState): void {
  state.telemetry.reset()
  state.requestLog.clear()
  state.eventTimes.clear()
  state.prefixCache.clear()
}
