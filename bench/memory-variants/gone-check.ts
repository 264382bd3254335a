// node bench/memory-variants/gone-check.ts combo combo-jssink combo-noprobe: how soon a variant
// (bundled by bench/memory-variants.ts into dist/memory-variants/) notices a client that left while
// no event came. One stream at a time, events 5 s apart; the client aborts 0.1 to 4 s after an
// event, and the time until the emulator saw its request closed (the variant aborted its fetch) is
// printed. A one-off check, not part of npm run bench.
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT } from '../../scripts/processes.ts'
import { serveWorker, spawnEmulator } from '../../scripts/stack.ts'

const KEY = 'bench-backend-key'
const OFFSETS_MS = [100, 400, 900, 1_050, 1_500, 2_300, 3_100, 4_000]
const emulator = await spawnEmulator(['--served-model-name', 'm', '--reasoning-parser', 'deepseek_r1', '--api-key', KEY])
const inFlight = async () => ((await (await fetch(`${emulator.url}/emulator/stats`)).json()) as { inFlight: number }).inFlight
try {
  for (const name of process.argv.slice(2)) {
    const served = await serveWorker(join(ROOT, 'dist/memory-variants', `${name}.js`), { UPSTREAM: emulator.url }, { limiter: false })
    const noticed: number[] = []
    try {
      for (const offset of OFFSETS_MS) {
        const controller = new AbortController()
        const response = await fetch(`${served.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
          body: JSON.stringify({
            model: 'm',
            stream: true,
            max_tokens: 3000,
            messages: [{ role: 'user', content: '[emulator ttft_ms=20 itl_ms=5000 reasoning_tokens=2000 content_tokens=2] hi' }],
          }),
          signal: controller.signal,
        })
        if (!response.body) throw new Error(`${name}: no body (HTTP ${response.status})`)
        await response.body.getReader().read() // the first event
        await sleep(offset)
        const at = Date.now()
        controller.abort()
        while ((await inFlight()) > 0 && Date.now() - at < 8_000) await sleep(20)
        noticed.push(Date.now() - at)
      }
    } finally {
      await served.dispose()
    }
    console.log(
      `${name}: ms from the client leaving to the upstream closed, ${OFFSETS_MS.join(', ')} ms after an event: ${noticed.join(', ')}`,
    )
  }
} finally {
  await emulator.stop()
}
