// GET /metrics in prometheus_client's text exposition, with vLLM V1's metric names,
// help strings and labels (model_name, engine="0"), fed by this process's real counts.
// Names, help texts and labels: vLLM v0.11.0 vllm/v1/metrics/loggers.py, PrometheusStatLogger.__init__
// (labelnames ["model_name", "engine"], one series per engine via make_per_engine); the three
// scheduler gauges the gateway's FleetLoad object reads are gauge_scheduler_running
// (vllm:num_requests_running), gauge_scheduler_waiting (vllm:num_requests_waiting) and
// gauge_kv_cache_usage (vllm:kv_cache_usage_perc; vllm:gpu_cache_usage_perc only with
// --show-hidden-metrics-for-version=0.10, not emulated).
// v0.20.2 (vllm/v1/metrics/loggers.py, PrometheusStatLogger.__init__): vllm:time_per_output_token_seconds
// is gone (vllm:inter_token_latency_seconds stays), and two gauges are new right after
// vllm:num_requests_waiting: vllm:num_requests_waiting_by_reason{reason="capacity"|"deferred"}
// (everything waits for capacity here: nothing is deferred) and
// vllm:engine_sleep_state{sleep_state="awake"|"weights_offloaded"|"discard_all"} (always awake).

import type { VllmVersion } from './options.ts'
import type { Histogram, Telemetry } from './stats.ts'

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** Python's repr() of a float. */
function pythonRepr(value: number): string {
  if (Number.isInteger(value) && Math.abs(value) < 1e16) return `${value}.0`
  const abs = Math.abs(value)
  if (abs !== 0 && (abs < 1e-4 || abs >= 1e16)) {
    return value.toExponential().replace(/e([+-])(\d)$/, 'e$10$2')
  }
  return String(value)
}

/** prometheus_client's floatToGoString: Go-style exponents for large values. */
export function goFloat(value: number): string {
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  if (Number.isNaN(value)) return 'NaN'
  const text = pythonRepr(value)
  const dot = text.indexOf('.')
  if (value > 0 && dot > 6) {
    const mantissa = `${text[0]}.${text.slice(1, dot)}${text.slice(dot + 1)}`.replace(/[0.]+$/, '')
    return `${mantissa}e+0${dot - 1}`
  }
  return text
}

type Labels = [string, string][]

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function sample(name: string, labels: Labels, value: number): string {
  const rendered = labels.map(([key, label]) => `${key}="${escapeLabel(label)}"`).join(',')
  return `${name}{${rendered}} ${goFloat(value)}\n`
}

function header(name: string, help: string, type: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`
}

function gauge(name: string, help: string, labels: Labels, value: number): string {
  return header(name, help, 'gauge') + sample(name, labels, value)
}

/** A counter as prometheus_client prints it: the _total sample, then a _created gauge block. */
function counter(base: string, help: string, series: [Labels, number][], created: number): string {
  const totals = series.map(([labels, value]) => sample(`${base}_total`, labels, value)).join('')
  const createds = series.map(([labels]) => sample(`${base}_created`, labels, created)).join('')
  return header(`${base}_total`, help, 'counter') + totals + header(`${base}_created`, help, 'gauge') + createds
}

function histogram(name: string, help: string, labels: Labels, data: Histogram, created: number): string {
  const buckets = data.bounds.map((bound, index) => sample(`${name}_bucket`, [...labels, ['le', goFloat(bound)]], data.counts[index] ?? 0))
  return (
    header(name, help, 'histogram') +
    buckets.join('') +
    sample(`${name}_bucket`, [...labels, ['le', '+Inf']], data.count) +
    sample(`${name}_count`, labels, data.count) +
    sample(`${name}_sum`, labels, data.sum) +
    header(`${name}_created`, help, 'gauge') +
    sample(`${name}_created`, labels, created)
  )
}

/** The scheduler's state now, for the gauges. */
export type SchedulerGauges = { running: number; waiting: number; kvCacheUsage: number }

/** One gauge with a series per value of an extra label (prometheus_client prints them in that order). */
function labelledGauge(name: string, help: string, labels: Labels, label: string, series: [string, number][]): string {
  return header(name, help, 'gauge') + series.map(([value, count]) => sample(name, [...labels, [label, value]], count)).join('')
}

export function renderMetrics(telemetry: Telemetry, modelName: string, load: SchedulerGauges, version: VllmVersion = '0.20.2'): string {
  const labels: Labels = [
    ['model_name', modelName],
    ['engine', '0'],
  ]
  const { stats, createdAt: created } = telemetry
  const reasons = (['stop', 'length', 'abort'] as const).map((reason): [Labels, number] => [
    [...labels, ['finished_reason', reason]],
    telemetry.finished[reason],
  ])
  const count = (base: string, help: string, value: number) => counter(base, help, [[labels, value]], created)
  const timing = (name: string, help: string, data: Histogram) => histogram(name, help, labels, data, created)
  const v0202 = version !== '0.11.0'
  const newGauges = v0202
    ? [
        labelledGauge(
          'vllm:num_requests_waiting_by_reason',
          "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; " +
            "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). " +
            'Sum of all reasons equals vllm:num_requests_waiting.',
          labels,
          'reason',
          [
            ['capacity', load.waiting],
            ['deferred', 0],
          ],
        ),
        labelledGauge(
          'vllm:engine_sleep_state',
          'Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; ' +
            'weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.',
          labels,
          'sleep_state',
          [
            ['awake', 1],
            ['weights_offloaded', 0],
            ['discard_all', 0],
          ],
        ),
      ]
    : []
  return [
    gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', labels, load.running),
    gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', labels, load.waiting),
    ...newGauges,
    gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', labels, load.kvCacheUsage),
    count('vllm:prefix_cache_queries', 'Prefix cache queries, in terms of number of queried tokens.', telemetry.prefixQueries),
    count('vllm:prefix_cache_hits', 'Prefix cache hits, in terms of number of cached tokens.', telemetry.prefixHits),
    count('vllm:prompt_tokens', 'Number of prefill tokens processed.', stats.promptTokens),
    count('vllm:generation_tokens', 'Number of generation tokens processed.', stats.tokensGenerated),
    counter('vllm:request_success', 'Count of successfully processed requests.', reasons, created),
    timing('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', telemetry.timeToFirstToken),
    ...(v0202
      ? []
      : [timing('vllm:time_per_output_token_seconds', 'Histogram of time per output token in seconds.', telemetry.timePerOutputToken)]),
    timing('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', telemetry.timePerOutputToken),
    timing('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', telemetry.e2eLatency),
    timing('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', telemetry.queueTime),
  ].join('')
}
