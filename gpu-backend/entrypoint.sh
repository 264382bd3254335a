#!/bin/sh
# The GPU container's entrypoint: builds the `vllm serve` command line for
# deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B from environment variables (each with the default
# the edge proxy's Worker assumes; gpu-backend/README.md lists them) and replaces itself with it.
# Arguments given to the container are appended, so they can add or override any vLLM flag.
#
# The backend key: VLLM_API_KEY, or VLLM_API_KEY_FILE naming a file whose first line is the key
# (a Docker or Compose secret). Without one the container refuses to start, so a backend is never
# served without it. The key reaches vLLM through its own VLLM_API_KEY environment variable,
# never on the command line (where ps and logs would show it), and this script never prints it.
set -eu

log() {
  printf 'edge-proxy-vllm: %s\n' "$*" >&2
}

# 78: EX_CONFIG, the container's configuration is wrong; restarting it will not help.
fail() {
  log "$*"
  exit 78
}

if [ -n "${VLLM_API_KEY_FILE:-}" ]; then
  [ -z "${VLLM_API_KEY:-}" ] || fail 'set VLLM_API_KEY or VLLM_API_KEY_FILE, not both'
  if [ ! -f "$VLLM_API_KEY_FILE" ] || [ ! -r "$VLLM_API_KEY_FILE" ]; then
    fail "VLLM_API_KEY_FILE ($VLLM_API_KEY_FILE) is not a readable file"
  fi
  # The first line; a trailing CR (a file written on Windows) is not part of the key.
  VLLM_API_KEY=$(head -n 1 "$VLLM_API_KEY_FILE" | tr -d '\r')
fi
# vLLM does not know this variable; it must not see it.
unset VLLM_API_KEY_FILE

if [ -z "${VLLM_API_KEY:-}" ]; then
  fail 'refusing to start without the backend API key: set VLLM_API_KEY, or VLLM_API_KEY_FILE to a file holding it (the Worker secret BACKEND_API_KEY)'
fi
case $VLLM_API_KEY in
  *[[:space:]]*) fail 'the backend API key contains whitespace; it must be one token (the Worker sends it as "Authorization: Bearer KEY")' ;;
esac
if [ "${#VLLM_API_KEY}" -lt 16 ]; then
  fail 'the backend API key is shorter than 16 characters; use a long random one (docs/deploy.md shows how to make one)'
fi
export VLLM_API_KEY

# Settings. The served model name and the context length must match the Worker's MODEL_ID and
# MAX_MODEL_LEN (wrangler.toml), and MAX_NUM_SEQS the fleet record's maxConcurrency: a test
# compares them.
MODEL=${MODEL:-deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B}
MODEL_REVISION=${MODEL_REVISION:-}
SERVED_MODEL_NAME=${SERVED_MODEL_NAME:-deepseek-r1-distill-qwen-1.5b}
DTYPE=${DTYPE:-bfloat16}
QUANTIZATION=${QUANTIZATION:-}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-4096}
# 0.9 whatever vLLM's own default (0.9 at v0.11.0, 0.92 at v0.20.2): docs/deploy.md's capacity
# figures assume it, and both releases get the same share during an upgrade.
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.9}
MAX_NUM_SEQS=${MAX_NUM_SEQS:-256}
ENABLE_PREFIX_CACHING=${ENABLE_PREFIX_CACHING:-true}
REASONING_PARSER=${REASONING_PARSER-deepseek_r1}
# priority: the gateway sends each request's vLLM `priority` from its API key's class
# (interactive -1, standard 0, batch 1; lower is served first). vLLM honours it only under this
# policy: its waiting queue is then ordered by (priority, arrival), and when the KV cache is full
# it preempts the running request of the lowest priority, so a batch key's long generation yields
# to an interactive one. Under fcfs (vLLM's default) the priority is accepted and ignored.
SCHEDULING_POLICY=${SCHEDULING_POLICY:-priority}
HOST=${HOST:-0.0.0.0}
PORT=${PORT:-8000}

# vLLM checks its flags too, but only after seconds of start-up; these fail at once and name
# the variable rather than the flag.
whole_number() {
  case $2 in
    '' | *[!0-9]* | 0*) fail "$1 must be a whole number above 0, got: $2" ;;
  esac
}
whole_number MAX_MODEL_LEN "$MAX_MODEL_LEN"
whole_number MAX_NUM_SEQS "$MAX_NUM_SEQS"
whole_number PORT "$PORT"
fraction_ok=false
case $GPU_MEMORY_UTILIZATION in
  *[!0-9.]* | *.*.*) ;;
  0.*[1-9]* | 1 | 1.0) fraction_ok=true ;;
esac
if [ "${fraction_ok:-}" != true ]; then
  fail "GPU_MEMORY_UTILIZATION must be a fraction above 0 and at most 1 (such as 0.9), got: $GPU_MEMORY_UTILIZATION"
fi
case $SCHEDULING_POLICY in
  fcfs | priority) ;;
  *) fail "SCHEDULING_POLICY must be priority or fcfs, got: $SCHEDULING_POLICY" ;;
esac

# The command line, built back to front so that the container's own arguments come last and win.
case $ENABLE_PREFIX_CACHING in
  true) set -- --enable-prefix-caching "$@" ;;
  false) set -- --no-enable-prefix-caching "$@" ;;
  *) fail "ENABLE_PREFIX_CACHING must be true or false, got: $ENABLE_PREFIX_CACHING" ;;
esac
if [ -n "$REASONING_PARSER" ]; then
  set -- --reasoning-parser "$REASONING_PARSER" "$@"
fi
if [ -n "$QUANTIZATION" ]; then
  set -- --quantization "$QUANTIZATION" "$@"
fi
if [ -n "$MODEL_REVISION" ]; then
  set -- --revision "$MODEL_REVISION" "$@"
fi
set -- serve "$MODEL" \
  --host "$HOST" \
  --port "$PORT" \
  --served-model-name "$SERVED_MODEL_NAME" \
  --dtype "$DTYPE" \
  --max-model-len "$MAX_MODEL_LEN" \
  --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION" \
  --max-num-seqs "$MAX_NUM_SEQS" \
  --scheduling-policy "$SCHEDULING_POLICY" \
  "$@"

# Weights baked into the image at build time (BAKE_WEIGHTS=true) leave this marker beside them:
# then the Hugging Face Hub is never contacted at start-up. A host directory or a non-empty volume
# mounted over HF_HOME hides the marker along with the baked weights, and the Hub is used as usual
# (a new, empty named volume starts as a copy of both).
if [ -z "${HF_HUB_OFFLINE:-}" ] && [ -n "${HF_HOME:-}" ] && [ -f "$HF_HOME/.baked-weights" ]; then
  export HF_HUB_OFFLINE=1
fi

# The command line holds no secret, so it is logged for whoever reads the container's logs.
log "starting: vllm $*"
exec vllm "$@"
