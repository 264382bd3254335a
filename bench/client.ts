// A timing client for OpenAI-style event streams. It is deliberately minimal: it records when
// each data event arrived, so the time spent here is the same for every target measured.

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across local processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now()
}

export interface StreamSample {
  /** chatcmpl id of the response, to look up the emulator's send times. */
  id: string
  sentAt: number
  /** Arrival time of each relayed event (see EventKind). */
  arrivals: number[]
  bytes: number
}

/**
 * Which frames count as relayed events: chat's `data:` events ([DONE] excluded); for the
 * Responses API, its token events (one reasoning_text or output_text delta per upstream token
 * chunk; its lifecycle events carry no generation); for the Messages API, its content_block_delta
 * events that carry generated text or thinking (a thinking_delta or text_delta, one per upstream
 * token chunk; message_start, ping, block starts and stops, the signature_delta, message_delta and
 * message_stop carry no generation). The first such event is the stream's first event (TTFE).
 */
export type EventKind = 'chat' | 'responses' | 'messages'

const RESPONSES_TOKEN_EVENT = /^event: response\.(reasoning_text|output_text)\.delta\n/
const MESSAGES_TOKEN_EVENT = /^event: content_block_delta\ndata: .*"delta":\{"type":"(thinking|text)_delta"/

function countsAsEvent(frame: string, kind: EventKind): boolean {
  if (kind === 'responses') return RESPONSES_TOKEN_EVENT.test(frame)
  if (kind === 'messages') return MESSAGES_TOKEN_EVENT.test(frame)
  return frame.startsWith('data: ') && frame !== 'data: [DONE]'
}

export async function timeStream(
  url: string,
  body: unknown,
  headers: Record<string, string>,
  kind: EventKind = 'chat',
): Promise<StreamSample> {
  const sentAt = nowMs()
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status} from ${url}: ${await response.text()}`)
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  const arrivals: number[] = []
  let id = ''
  let buffer = ''
  let bytes = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    const at = nowMs()
    bytes += value.byteLength
    buffer += decoder.decode(value, { stream: true })
    let end = buffer.indexOf('\n\n')
    while (end !== -1) {
      const frame = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      if (countsAsEvent(frame, kind)) {
        arrivals.push(at)
        // Responses and Messages events carry no chatcmpl id: no emulator send times to match (no lag figures).
        if (!id && kind === 'chat') id = (JSON.parse(frame.slice(6)) as { id: string }).id
      }
      end = buffer.indexOf('\n\n')
    }
  }
  return { id, sentAt, arrivals, bytes }
}

/** Runs `total` calls of `task`, at most `concurrency` at a time. */
export async function runPool<T>(total: number, concurrency: number, task: () => Promise<T>): Promise<T[]> {
  const results: T[] = []
  let started = 0
  const worker = async () => {
    while (started < total) {
      started++
      results.push(await task())
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker))
  return results
}
