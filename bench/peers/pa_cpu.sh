#!/usr/bin/env bash
# CPU time per request, of perf_analyzer and of the server it drives: on a small machine the load
# generator shares the cores with the server, and this says which of the two sets the ceiling.
# Runs perf_analyzer (--async, 64 clients, count windows) against one server at a time and reads
# both processes' user+system time around the run; requests are counted by the server's own
# statistics endpoint, so retries and warm-up are included on both sides.
#
#   bash bench/peers/pa_cpu.sh torchbridge        # starts target/release/torchbridge on $PEERS_RUN/torchbridge_repo
#   bash bench/peers/pa_cpu.sh triton             # starts Triton's python backend (triton_repo.py serve)
#   REPO=… (torchbridge's repository)  PROTOS="http grpc"  C=64  N=20000 (requests per window)  MODEL=mlp  TB_BIN=…
#   PA_ARGS="--max-threads 2" (more perf_analyzer flags)  TB_ARGS="--allow-client-shm" (more torchbridge serve flags)
#   PA_CPUS=0 SERVER_CPUS=1: pin perf_analyzer and the server (every process and thread it starts)
#   to those CPUs (taskset lists), so the load generator stops taking CPU from the server under test
#   as if it ran on another machine; the same pinning applies to whichever server is measured.
# Needs what setup.sh installs (pa, and triton for the Triton side) and the repositories run_all.sh
# writes under $PEERS_RUN (default /tmp/peers-run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export PEERS_RUN=${PEERS_RUN:-/tmp/peers-run} PEERS_DIR=$HERE
PA=/tmp/peers-pa/bin/perf_analyzer
export LD_LIBRARY_PATH=/tmp/peers-pa/lib/python3.11/site-packages/nvidia/cuda_runtime/lib:${LD_LIBRARY_PATH:-}
MODEL=${MODEL:-mlp}
PIN_SERVER=${SERVER_CPUS:+taskset -c $SERVER_CPUS}
PIN_PA=${PA_CPUS:+taskset -c $PA_CPUS}
case ${1:-} in
  torchbridge)
    source "$ROOT/scripts/env.sh" >/dev/null
    setsid $PIN_SERVER "${TB_BIN:-$ROOT/target/release/torchbridge}" serve --model-repository "${REPO:-$PEERS_RUN/torchbridge_repo}" \
      --host 127.0.0.1 --http-port 8440 --grpc-port 8441 --metrics-port 8442 --log warn ${TB_ARGS:-} >/tmp/pa_cpu-server.log 2>&1 &
    HTTP=8440 GRPC=8441 ;;
  triton)
    setsid $PIN_SERVER /tmp/peers-triton/bin/python "$HERE/triton_repo.py" serve 8450 8451 8452 >/tmp/pa_cpu-server.log 2>&1 &
    HTTP=8450 GRPC=8451 ;;
  *) echo "usage: $0 torchbridge|triton"; exit 2 ;;
esac
LEADER=$!
trap 'kill -- -$LEADER 2>/dev/null || true' EXIT
for _ in $(seq 240); do curl -sf "127.0.0.1:$HTTP/v2/models/$MODEL/ready" >/dev/null && break; sleep 0.5; done
# Every process of the server's session (Triton runs a stub process per model instance).
cpu_ticks() { local t=0 p; for p in $(ps -o pid= -s "$LEADER"); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
# Requests served, rows run and backend calls made, from the server's own statistics.
served() { curl -s "127.0.0.1:$HTTP/v2/models/$MODEL/stats" | python3 -c \
  'import json,sys; s=json.load(sys.stdin)["model_stats"][0]; print(s["inference_stats"]["success"]["count"], s["inference_count"], s["execution_count"])'; }
for proto in ${PROTOS:-http grpc}; do
  url=127.0.0.1:$HTTP; [ "$proto" = grpc ] && url=127.0.0.1:$GRPC
  read -r n0 r0 e0 <<<"$(served)"; s0=$(cpu_ticks)
  /usr/bin/time -f "%U %S" -o /tmp/pa_cpu.time timeout -k 5 150 $PIN_PA $PA -m "$MODEL" -u "$url" -i "$proto" -b 1 \
    --concurrency-range "${C:-64}" --measurement-mode count_windows --measurement-request-count "${N:-20000}" \
    --max-trials 3 -s 100 --async ${PA_ARGS:-} -f /tmp/pa_cpu.csv >/tmp/pa_cpu.log 2>&1 || { echo "$proto: perf_analyzer failed (/tmp/pa_cpu.log)"; continue; }
  s1=$(cpu_ticks); read -r n1 r1 e1 <<<"$(served)"
  python3 - "$1" "$proto" $((n1 - n0)) $((s1 - s0)) "$(getconf CLK_TCK)" $((r1 - r0)) $((e1 - e0)) <<'PY'
import csv, sys
server, proto, n, ticks, hz, rows, calls = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
rate = float(list(csv.DictReader(open("/tmp/pa_cpu.csv")))[0]["Inferences/Second"])
user, system = map(float, open("/tmp/pa_cpu.time").read().split()[-2:])
print(f"{server} {proto}: {rate:,.0f} infer/s; per request: perf_analyzer {(user + system) * 1e6 / n:.1f} us "
      f"CPU, server {ticks / hz * 1e6 / n:.1f} us CPU ({n} requests, {rows / max(calls, 1):.1f} rows a backend call)")
PY
done
