#!/usr/bin/env bash
# Before and after: does a change cost the request path anything?
#
# Serves one model with two torchbridge binaries, A (before) and B (after), one server at a time,
# alternating A, B, A, B, …, and drives each with the same client (B's `torchbridge bench`). Per
# run: requests/s, and the server's CPU time per request (its user+system time over the requests
# its statistics counted). On a shared 2-core machine rates swing with the neighbours; CPU time per
# request swings less, and alternating spreads the neighbours' noise over both sides.
#
#   A_BIN=/tmp/before/torchbridge bash bench/ab.sh    # B_BIN defaults to target/release/torchbridge
#   REPS=4  SECS=4  CLIENTS=16  PROTOCOLS="http-json http-binary grpc"  PORT=8360 (+1 gRPC, +2 metrics)
#   SERVE_ARGS="…" (more `serve` flags for both servers)
# The model: a generated 784→256→10 MLP through onnx, one thread, batching without delay (the
# bench/one_client.sh setup). Results go to /tmp/ab-bench/ (a JSON per run, serve logs) and a
# summary with each side's medians is printed at the end.
source "$(dirname "$0")/lib.sh"
A=${A_BIN:?A_BIN: the torchbridge binary from before the change}
B=${B_BIN:-$TB}
REPS=${REPS:-4}
PORT=${PORT:-8360}
OUT=/tmp/ab-bench
rm -rf "$OUT" && mkdir -p "$OUT"

python bench/mlp_repo.py "$OUT/repo" mlp --hidden 256 --threads 1 --tail '[batching]
max_queue_delay_us = 0
[warmup]
batch_sizes = [1, 8, 32]
'

# stats: requests the model's statistics counted as successes.
stats() { curl -s "127.0.0.1:$PORT/v2/models/mlp/stats" |
  python -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_run() {  # side (A|B), binary, protocol, rep
  local label="$1-$3-$4" pid n0 t0
  "$2" serve --model-repository "$OUT/repo" --host 127.0.0.1 --http-port "$PORT" \
    --grpc-port $((PORT + 1)) --metrics-port $((PORT + 2)) --log warn ${SERVE_ARGS:-} \
    > "$OUT/serve-$label.log" 2>&1 &
  pid=$!
  wait_ready "$PORT" $pid "$OUT/serve-$label.log"
  n0=$(stats) t0=$(cpu_ticks $pid)
  "$B" bench --model mlp --url "127.0.0.1:$PORT" --grpc-url "127.0.0.1:$((PORT + 1))" \
    --protocol "$3" --concurrency "${CLIENTS:-16}" --duration "${SECS:-4}s" --warmup-requests 500 \
    --json > "$OUT/$label.json" 2> /dev/null
  echo "$1 $3 $(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["server"][0]["requests_per_s"])' \
    "$OUT/$label.json") $(( $(stats) - n0 )) $(( $(cpu_ticks $pid) - t0 ))" >> "$OUT/runs.txt"
  kill $pid; wait $pid 2> /dev/null || true
  tail -1 "$OUT/runs.txt"
}

echo "A: $A"; echo "B: $B"; echo "side protocol req/s requests cpu_ticks"
for rep in $(seq "$REPS"); do
  for protocol in ${PROTOCOLS:-http-json http-binary grpc}; do
    one_run A "$A" "$protocol" "$rep"
    one_run B "$B" "$protocol" "$rep"
  done
done

python - "$OUT/runs.txt" "$(getconf CLK_TCK)" <<'EOF'
import statistics, sys
from collections import defaultdict
runs, hz = defaultdict(list), int(sys.argv[2])
for line in open(sys.argv[1]):
    side, protocol, rate, requests, ticks = line.split()
    runs[protocol, side].append((float(rate), int(ticks) / hz * 1e6 / max(int(requests), 1)))
print(f"\n{'protocol':<12} {'side':<4} {'req/s (median)':>15} {'server CPU µs/request (median)':>31}   runs")
for (protocol, side), rs in sorted(runs.items()):
    rates, cpus = zip(*rs)
    each = " · ".join(f"{r:,.0f}/{c:.1f}" for r, c in rs)
    print(f"{protocol:<12} {side:<4} {statistics.median(rates):>15,.0f} {statistics.median(cpus):>31.1f}   {each}")
EOF
