import type { MetricsSnapshot } from '../durable/telemetry-aggregator.ts'
import type { KeyBoard } from '../limits/key-report.ts'
import { TTFT_BUCKETS_S, type TtftHistogram } from './totals.ts'

// Prometheus text exposition (version 0.0.4) of the fleet-wide totals the aggregator keeps.

const PREFIX = 'edge_proxy_'

/** Label values are escaped as the format requires: backslash, double quote, newline. */
function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function labels(pairs: Record<string, string>): string {
  return `{${Object.entries(pairs)
    .map(([name, value]) => `${name}="${label(value)}"`)
    .join(',')}}`
}

class Exposition {
  lines: string[] = []

  metric(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): this {
    this.lines.push(`# HELP ${PREFIX}${name} ${help}`, `# TYPE ${PREFIX}${name} ${type}`)
    return this
  }

  sample(name: string, value: number, pairs: Record<string, string> = {}): this {
    this.lines.push(`${PREFIX}${name}${Object.keys(pairs).length > 0 ? labels(pairs) : ''} ${value}`)
    return this
  }

  text(): string {
    return `${this.lines.join('\n')}\n`
  }
}

/** A histogram per backend, on TTFT_BUCKETS_S (cumulative buckets, then +Inf, sum and count). */
function histograms(out: Exposition, name: string, byBackend: Record<string, TtftHistogram>): void {
  for (const [backend, histogram] of Object.entries(byBackend).sort()) {
    TTFT_BUCKETS_S.forEach((bound, i) => out.sample(`${name}_bucket`, histogram.buckets[i] ?? 0, { backend, le: String(bound) }))
    out.sample(`${name}_bucket`, histogram.count, { backend, le: '+Inf' })
    out.sample(`${name}_sum`, Math.round(histogram.sumS * 1e6) / 1e6, { backend })
    out.sample(`${name}_count`, histogram.count, { backend })
  }
}

function splitKey(key: string): [string, string] {
  const at = key.lastIndexOf(' ')
  return [key.slice(0, at), key.slice(at + 1)]
}

export function renderPrometheus(snapshot: MetricsSnapshot): string {
  const { totals } = snapshot
  const out = new Exposition()
  out.metric('responses_total', 'counter', 'Responses by route pattern and HTTP status.')
  for (const [key, count] of Object.entries(totals.responses).sort()) {
    const [route, status] = splitKey(key)
    out.sample('responses_total', count, { route, status })
  }
  out.metric('chat_requests_total', 'counter', 'Chat completions by backend and outcome (ok, upstream_error, client_abort, refused).')
  for (const [key, count] of Object.entries(totals.chat).sort()) {
    const [backend, outcome] = splitKey(key)
    out.sample('chat_requests_total', count, { backend, outcome })
  }
  out.metric('time_to_first_token_seconds', 'histogram', 'Time from the request to the client taking the first reasoning or content token.')
  histograms(out, 'time_to_first_token_seconds', totals.ttft)
  out.metric(
    'edge_wait_seconds',
    'histogram',
    'Time requests waited at the edge for a free slot while the fleet was full (only requests that waited; included in time_to_first_token_seconds).',
  )
  // Totals saved before the edge queue have no edgeWait.
  histograms(out, 'edge_wait_seconds', totals.edgeWait ?? {})
  out.metric('completion_tokens_total', 'counter', 'Completion tokens the backends reported.')
  for (const [backend, tokens] of Object.entries(totals.completionTokens).sort()) out.sample('completion_tokens_total', tokens, { backend })
  out.metric('streams_in_flight', 'gauge', 'Streams being relayed now, over the isolates that reported in the last minute.')
  out.sample('streams_in_flight', snapshot.streamsInFlight)
  out.metric('isolates_reporting', 'gauge', 'Worker isolates that reported in the last minute.')
  out.sample('isolates_reporting', snapshot.isolatesReporting)
  out.metric('failovers_total', 'counter', 'Requests moved to another backend before any data reached the client.')
  out.sample('failovers_total', totals.failovers)
  out.metric(
    'hedges_total',
    'counter',
    'Requests hedged (a second backend asked for the first token), by which won: primary, hedge, or none.',
  )
  for (const won of ['primary', 'hedge', 'none']) out.sample('hedges_total', totals.hedges?.[won] ?? 0, { won })
  out.metric('rate_limit_refusals_total', 'counter', 'Requests refused with 429 by a per-key rate limit.')
  out.sample('rate_limit_refusals_total', totals.counters.rateLimitRefusals)
  out.metric('rate_limiter_unavailable_total', 'counter', 'Times the rate limiter could not answer (error or timeout).')
  out.sample('rate_limiter_unavailable_total', totals.counters.rateLimiterUnavailable)
  out.metric('rate_limiter_settle_failures_total', 'counter', 'Rate-limit leases whose settlement failed.')
  out.sample('rate_limiter_settle_failures_total', totals.counters.rateLimiterSettleFailures)
  out.metric('telemetry_dropped_records_total', 'counter', 'Request records lost because the aggregator was unreachable for long.')
  out.sample('telemetry_dropped_records_total', totals.counters.telemetryDropped + snapshot.lateRecords)
  out.metric('speculative_admissions_total', 'counter', 'Chat requests whose backend call started while the rate limiter decided.')
  out.sample('speculative_admissions_total', totals.counters.speculativeAdmissions)
  out.metric('speculative_refusals_total', 'counter', 'Speculative chat requests the rate limiter refused (backend call aborted).')
  out.sample('speculative_refusals_total', totals.counters.speculativeRefusals)
  keyBoard(out, snapshot.keys ?? { closest: [], flagged: [] })
  return out.text()
}

/**
 * The board of keys (src/telemetry/key-board.ts): bounded series whatever the number of keys, one
 * per flagged key and one per budget of the keys nearest their budgets. Key ids are public
 * identifiers (key_ and 16 hex digits), never the secrets.
 */
function keyBoard(out: Exposition, board: KeyBoard): void {
  out.metric(
    'keys_usage_spike',
    'gauge',
    "Keys whose last hour's tokens jumped far above their own recent normal (flagged), among the keys that reported in the last hour.",
  )
  out.sample('keys_usage_spike', board.flagged.length)
  out.metric('key_usage_spike', 'gauge', 'One series per flagged key, always 1: the key_id of each key counted in keys_usage_spike.')
  for (const report of [...board.flagged].sort((a, b) => a.keyId.localeCompare(b.keyId))) {
    out.sample('key_usage_spike', 1, { key_id: report.keyId })
  }
  out.metric(
    'key_budget_used_ratio',
    'gauge',
    'Share of a token budget used (reservations of requests in flight included) by period, for the keys nearest their budgets.',
  )
  for (const report of board.closest) {
    for (const budget of report.budgets) {
      if (budget.limit <= 0) continue
      out.sample('key_budget_used_ratio', Math.round((budget.used / budget.limit) * 1e4) / 1e4, {
        key_id: report.keyId,
        period: budget.period,
      })
    }
  }
}
