// combo.js with the upstream request made as the gateway makes it (src/dispatch/upstream.ts): the
// client's body read and parsed in JS and sent on as a JSON string, instead of forwarding the
// client's body stream as the floors do.
import { comboFetch } from './_combo.js'

export default { fetch: (request, env) => comboFetch(request, env, { probe: true, json: true }) }
