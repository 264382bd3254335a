// Mechanism (e): (a) + (b) + (c) + (d) together, and the upstream call's watchdog timer
// (src/dispatch/upstream-call.ts: one lazily re-armed setTimeout per stream, idle deadline).
import { comboFetch } from './_combo.js'

export default { fetch: (request, env) => comboFetch(request, env, { probe: true }) }
