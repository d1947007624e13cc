#!/usr/bin/env bash
# Overload: what happens when requests arrive faster than a batching model can serve them?
#
#  1. sustainable rate X: a closed loop of CLIENTS clients (binary HTTP) — what the server completes
#     (CLIENTS = the batch running plus a full queue, so the closed loop itself is never refused);
#  2. unloaded latency: an open loop at X/4 (`torchbridge bench --rate`);
#  3. overload: an open loop at 4·X, while the server's RSS is sampled every 250 ms;
#  4. afterwards: is the server up, and does it answer a normal request?
# and prints, for the accepted requests, p50/p99 against the unloaded p99, how many were refused
# with 429 and how fast those refusals came back, the RSS over the run, and whether the server lived.
#
#   bash bench/overload.sh                     # a generated 784→4096×3→10 MLP (onnx, batching)
#   MODEL_REPO=/path MODEL=name bash bench/overload.sh   # any batching model of a repository
#   SECS=10 (per phase)  TB_BIN=target/release/torchbridge  PORT=8300 (HTTP; +1 gRPC, +2 metrics)
#   CLIENTS=32 (phase 1: the most requests your model holds, running plus queued: an instance takes at most
#   max_batch_size rows, at most what is queued, so 2 x max_queue_size where the queue is below a batch)
#   BENCH_BIN=… (the load generator's binary; default TB_BIN)
#   MODEL_THREADS=1 (the generated model's intra-op threads)   QUEUE_WAIT_US= (its `max_queue_wait_us`; unset: none)
#   QUEUE_SIZE=16 (its `max_queue_size`)
#
# The generated model's queue holds at most 16 requests by default (`max_queue_size`), half a full batch: an instance takes
# what is queued when it comes free, so under overload a batch has at most 16 rows, and an accepted request waits
# at most for the batch running plus its own. The queue size is the knob that trades throughput for latency.
# The model gets one intra-op thread: on a 2-core machine the open-loop generator at 4x needs the other core, and
# a model spread over both has its batches slowed unevenly by it (2 threads: 2.15-2.45x the unloaded p99 in
# session 5's runs against 1.80-1.98x with one, at about 70 % of the throughput). Results go to /tmp/overload/ (JSON of each phase, rss.txt, serve.log).
source "$(dirname "$0")/lib.sh"
SECS=${SECS:-10}
PORT=${PORT:-8300}
OUT=/tmp/overload
mkdir -p "$OUT"

if [ -z "${MODEL_REPO:-}" ]; then
  MODEL_REPO=$OUT/repo
  MODEL=wide_mlp
  # heavy enough per row that the model, not HTTP, limits the rate (so 4x is within the generator's reach)
  python bench/mlp_repo.py "$MODEL_REPO" wide_mlp --hidden 4096 4096 4096 --threads "${MODEL_THREADS:-1}" \
    --tail "[batching]
max_queue_delay_us = 500
preferred_batch_sizes = [16, 32]
max_queue_size = ${QUEUE_SIZE:-16}
${QUEUE_WAIT_US:+max_queue_wait_us = $QUEUE_WAIT_US
}"
fi
MODEL=${MODEL:?set MODEL to the model name in MODEL_REPO}

"$TB" serve --model-repository "$MODEL_REPO" --host 127.0.0.1 --http-port "$PORT" \
  --grpc-port $((PORT + 1)) --metrics-port $((PORT + 2)) >"$OUT/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
wait_ready "$PORT" $PID "$OUT/serve.log"
BENCH=${BENCH_BIN:-$TB}
bench() { "$BENCH" bench --model "$MODEL" --url "127.0.0.1:$PORT" --protocol http-binary --json "$@"; }
rate_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['server'][0]['requests_per_s'])" "$1"; }

CLIENTS=${CLIENTS:-32}
echo "1/4 sustainable rate: closed loop, $CLIENTS clients, ${SECS}s"
bench --concurrency "$CLIENTS" --duration "${SECS}s" > "$OUT/sustained.json"
X=$(rate_of "$OUT/sustained.json")
LIGHT=$(python3 -c "print(round($X / 4, 1))")
OVER=$(python3 -c "print(round($X * 4, 1))")
echo "2/4 unloaded: open loop at $LIGHT/s"
bench --rate "$LIGHT" --duration "${SECS}s" > "$OUT/light.json"
echo "3/4 overload: open loop at $OVER/s, RSS sampled"
: > "$OUT/rss.txt"
( while kill -0 $PID 2>/dev/null; do
    awk -v t="$(date +%s.%N)" '/VmRSS/ {print t, $2}' "/proc/$PID/status" >> "$OUT/rss.txt" 2>/dev/null || true
    sleep 0.25
  done ) &
SAMPLER=$!
bench --rate "$OVER" --duration "${SECS}s" --max-in-flight 2048 > "$OUT/over.json"
sleep 1
kill $SAMPLER 2>/dev/null || true
echo "4/4 afterwards: a normal closed-loop run of 50 requests"
ALIVE=yes; kill -0 $PID 2>/dev/null || ALIVE=no
bench --concurrency 1 --requests 50 > "$OUT/after.json" || true

python3 - "$OUT" "$ALIVE" "$CLIENTS" <<'EOF'
import json, pathlib, sys
out, alive, clients = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
run = lambda name: json.loads((out / f"{name}.json").read_text())["server"][0]
s, l, o = run("sustained"), run("light"), run("over")
try:
    a = run("after")
except Exception as e:  # noqa: BLE001
    a = {"requests": 0, "errors": f"no report: {e}"}
rss = [int(line.split()[1]) for line in (out / "rss.txt").read_text().split("\n") if line.strip()]
ok = o["requests"] - o["errors"]
refused = {k: v for k, v in o["errors_by_kind"].items() if "429" in k or "RESOURCE_EXHAUSTED" in k}
other = {k: v for k, v in o["errors_by_kind"].items() if k not in refused}
lat = o["latency_ms"]
print(f"\nsustainable (closed loop, {clients} clients): {s['requests_per_s']:,.0f} req/s, "
      f"refused {s['errors']}, "
      f"p50 {s['latency_ms']['p50']:.2f} ms, p99 {s['latency_ms']['p99']:.2f} ms")
print(f"unloaded (open loop at {l['offered_per_s']:,.0f}/s): p50 {l['latency_ms']['p50']:.2f} ms, "
      f"p99 {l['latency_ms']['p99']:.2f} ms, errors {l['errors']}")
print(f"overload (open loop at {o['offered_per_s']:,.0f}/s for {o['seconds']:.1f} s, generator lag max "
      f"{o['generator_lag_ms']:.1f} ms): {o['requests']:,} sent")
print(f"  accepted {ok:,} ({o['requests_per_s']:,.0f}/s): p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
      f"= {lat['p99'] / max(l['latency_ms']['p99'], 1e-9):.2f}x the unloaded p99 (target <= 2x)")
if refused:
    e = o.get("error_latency_ms") or {}
    print(f"  refused {sum(refused.values()):,} {refused}: answered in p50 {e.get('p50', 0):.3f} ms, "
          f"p99 {e.get('p99', 0):.3f} ms, max {e.get('max', 0):.3f} ms")
print(f"  other errors: {other or 'none'}")
if rss:
    print(f"server RSS over the run: first {rss[0] / 1024:.0f} MiB, min {min(rss) / 1024:.0f}, "
          f"max {max(rss) / 1024:.0f}, last {rss[-1] / 1024:.0f} MiB ({len(rss)} samples)")
print(f"server alive after the overload: {alive}; afterwards {a['requests']} requests, errors {a['errors']}")
EOF
