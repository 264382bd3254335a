// combo.js with the client's body a JS ReadableStream the relay enqueues into directly
// (no TransformStream and no writer): mechanism (a) without the JS stream's writable side.
import { comboFetch } from './_combo.js'

export default { fetch: (request, env) => comboFetch(request, env, { probe: true, sink: 'queue' }) }
