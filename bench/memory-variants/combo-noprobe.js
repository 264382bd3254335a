// combo.js without the gone-client probe: what the probe costs in the gateway's own relay shape.
import { comboFetch } from './_combo.js'

export default { fetch: (request, env) => comboFetch(request, env, { probe: false }) }
