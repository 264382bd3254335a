// npm run loadtest -- --url URL ...: TTFT, inter-token latency, tokens/s and errors of streaming
// chat completions against any OpenAI-compatible endpoint. See README.md, "Load testing".
import { runLoadtestCli } from './loadtest/cli.ts'

process.exitCode = await runLoadtestCli(process.argv.slice(2))
