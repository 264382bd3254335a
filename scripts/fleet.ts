// npm run fleet -- <command>: list, add, remove, drain and undrain the vLLM backends in the FLEET
// namespace, locally (the state wrangler dev uses) or --remote; from-compose prints the entries of a
// GPU host's compose file (gpu-backend/compose.yaml). See docs/fleet.md and docs/deploy.md.
import { runFleetCli } from './fleet/cli.ts'

process.exitCode = await runFleetCli(process.argv.slice(2))
