#!/usr/bin/env bash
# One client: how much latency does the server add to the model's own call?
#
# For each of REPS rounds, alternating, a server with the default settings and one with
# `--idle-poll-us IDLE_POLL_US`; against each, one `torchbridge bench` run that measures the
# served p50 (one client, binary HTTP by default) and, in the same run, the in-process p50 of the
# same model through the onnx bridge. Prints served p50/p99, in-process p50 and the difference.
#
#   bash bench/one_client.sh      # a generated 784→256→10 MLP (onnx, one thread, batching, no delay)
#   REPS=3  SECS=5  IDLE_POLL_US=1000  PROTOCOL=http-binary|grpc|http-json  PORT=8350 (+1 gRPC, +2 metrics)
#   TB_BIN=target/release/torchbridge
#   HALT_POLL_NS=200000  adds a third server per round: the default one, with the guest kernel's
#     halt polling (cpuidle-haltpoll, /sys/module/haltpoll/parameters/guest_halt_poll_ns) set to
#     this many ns for its run; needs root on a KVM guest that has the module; the old value is
#     put back on exit. (200000 is Linux's own default; some VMs, this one included, boot with 0.)
# Results go to /tmp/one_client/ (JSON of each run, serve logs).
source "$(dirname "$0")/lib.sh"
REPS=${REPS:-3}
PORT=${PORT:-8350}
OUT=/tmp/one_client
mkdir -p "$OUT"

python bench/mlp_repo.py "$OUT/repo" mlp --hidden 256 --threads 1 --tail '[batching]
max_queue_delay_us = 0
[warmup]
batch_sizes = [1, 8, 32]
'

one_run() {  # label, extra serve flags...
  local label=$1; shift
  "$TB" serve --model-repository "$OUT/repo" --host 127.0.0.1 --http-port "$PORT" \
    --grpc-port $((PORT + 1)) --metrics-port $((PORT + 2)) --log warn "$@" > "$OUT/serve-$label.log" 2>&1 &
  local pid=$!
  wait_ready "$PORT" $pid "$OUT/serve-$label.log"
  "$TB" bench --model mlp --url "127.0.0.1:$PORT" --grpc-url "127.0.0.1:$((PORT + 1))" \
    --protocol "${PROTOCOL:-http-binary}" --concurrency 1 --duration "${SECS:-5}s" \
    --bridges onnx --model-dir "$OUT/repo/mlp" --json > "$OUT/$label.json" 2> /dev/null
  kill $pid; wait $pid 2> /dev/null || true
  python - "$label" "$OUT/$label.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[2]))
served, inproc = d["server"][0], d["in_process"][0]
s, i = served["latency_ms"]["p50"] * 1e3, inproc["latency_ms"]["p50"] * 1e3
print(f"{sys.argv[1]:<24} {served['protocol']}: served p50 {s:.0f} us, p99 "
      f"{served['latency_ms']['p99'] * 1e3:.0f} us, {served['requests_per_s']:.0f} req/s; "
      f"in process p50 {i:.1f} us; added {s - i:+.0f} us")
EOF
}

HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [ -n "${HALT_POLL_NS:-}" ]; then
  [ -w "$HALT_POLL" ] || { echo "HALT_POLL_NS: cannot write $HALT_POLL (not root, or no cpuidle-haltpoll)"; exit 1; }
  HALT_POLL_WAS=$(cat "$HALT_POLL")
  trap 'echo "$HALT_POLL_WAS" > "$HALT_POLL"' EXIT
  echo "guest halt polling: $HALT_POLL_WAS ns, $HALT_POLL_NS ns for the halt-poll runs"
fi
for rep in $(seq "$REPS"); do
  one_run "default-$rep"
  one_run "idle-poll-${IDLE_POLL_US:-1000}us-$rep" --idle-poll-us "${IDLE_POLL_US:-1000}"
  if [ -n "${HALT_POLL_NS:-}" ]; then
    echo "$HALT_POLL_NS" > "$HALT_POLL"
    one_run "halt-poll-${HALT_POLL_NS}ns-$rep"
    echo "$HALT_POLL_WAS" > "$HALT_POLL"
  fi
done
