// Issue 29: a burst never stalls. 1,000 streams opened at once (not ramped) against a fleet of
// the default shape (two emulated vLLM backends with the compose file's flags, the built Worker
// with wrangler.toml's settings: the 30 s first-event deadline, the 3 s headers deadline, the slot
// ledger and its edge queue), where the burst overfills the fleet twice over: 250 sequence slots
// per backend (--max-num-seqs = BACKEND_MAX_CONCURRENCY), and each backend renders and tokenizes
// every prompt before its headers as vLLM's API server does (--preprocess-ms-per-token).
// Generations are short so that the machine relays the burst within the deadline; the full-length
// version, with its measurements, is `npm run bench:burst` (bench/burst.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { burst, CLIENT_KEY, outcomeAt, startFleet, type BurstOptions, type BurstResult, type Fleet } from '../../bench/burst.ts'

/** wrangler.toml's FIRST_EVENT_TIMEOUT_MS: every stream has its answer by then. */
const FIRST_EVENT_DEADLINE_MS = 30_000

const OPTIONS: BurstOptions = {
  streams: 1_000,
  seqs: 250,
  // 0.02 ms a token: ~1.6 ms of preprocessing for these ~80-token prompts, its 5% on the API
  // server's loop (tens of ms for the backend's whole share of the burst).
  preprocessMsPerToken: 0.02,
  promptWords: 60,
  reasoningTokens: 4,
  contentTokens: 4,
  apiLagMs: 0,
  deadlineMs: FIRST_EVENT_DEADLINE_MS,
  // Past the deadline, so that a stream answered late is seen as late, not as cut; bounded.
  observeMs: FIRST_EVENT_DEADLINE_MS + 5_000,
}

/** What a stream may end with besides tokens: the edge queue's refusals, each with Retry-After. */
const QUEUE_REFUSALS = ['queue_full', 'queue_timeout', 'queue_displaced']

let fleet: Fleet
let result: BurstResult

beforeAll(async () => {
  fleet = await startFleet(OPTIONS)
}, 120_000)

afterAll(async () => {
  await fleet?.stop()
})

describe('a burst of 1,000 streams at once into a fleet it overfills twice', () => {
  it('gives every stream its first token, or a clear refusal, within the first-event deadline: none is silent', async () => {
    result = await burst(
      fleet.gateway.url,
      CLIENT_KEY,
      fleet.backends.map((backend) => backend.url),
      OPTIONS,
    )
    const late = result.records.filter((record) => {
      const outcome = outcomeAt(record, FIRST_EVENT_DEADLINE_MS)
      return outcome === 'silent' || outcome === 'committed_only'
    })
    expect({ late: late.length, atDeadline: result.atDeadline, codes: result.codes }).toMatchObject({ late: 0 })
    // The fleet was overfilled: some of the burst waited in the edge queue, and was served from it.
    expect(result.atDeadline.token).toBeGreaterThan(OPTIONS.seqs * 2)
  }, 60_000)

  it('refuses only from the edge queue, never by blaming a backend that answered (no 504 upstream_timeout)', () => {
    const unclear = result.records.filter(
      (record) =>
        record.errorCode !== null && (!QUEUE_REFUSALS.includes(record.errorCode) || (record.status === 503 && record.retryAfter === null)),
    )
    expect(unclear.slice(0, 3)).toEqual([])
  })
})
