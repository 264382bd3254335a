// combo.js with every probe written from one shared, pre-encoded Uint8Array instead of a fresh
// encoder.encode(':\n\n') per probe: whether the probe's memory is its per-write allocation.
import { comboFetch } from './_combo.js'

export default { fetch: (request, env) => comboFetch(request, env, { probe: true, sharedProbe: true }) }
