// npm run fleet -- <command>: list, add, remove, drain and undrain the vLLM backends in the FLEET
// namespace, locally (the state wrangler dev uses) or --remote. See docs/fleet.md.
import { runFleetCli } from './fleet/cli.ts'

process.exitCode = await runFleetCli(process.argv.slice(2))
