// npm run build: bundle the Worker into dist/ as `wrangler deploy` would, without deploying.
import { buildWorker } from './stack.ts'

const file = await buildWorker()
console.log(`built ${file}`)
