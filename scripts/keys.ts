// npm run keys -- <command>: create, list, show and revoke API keys in the KEYS namespace, locally
// (the state wrangler dev uses) or --remote. See docs/keys.md.
import { runKeysCli } from './keys/cli.ts'

process.exitCode = await runKeysCli(process.argv.slice(2))
