// combo.js with the client's body the floor's identity JS TransformStream (written by its writer)
// instead of an IdentityTransformStream: mechanism (a) inside the whole relay.
import { comboFetch } from './_combo.js'

export default { fetch: (request, env) => comboFetch(request, env, { probe: true, sink: 'js' }) }
