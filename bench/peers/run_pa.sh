#!/usr/bin/env bash
# Triton's own load generator perf_analyzer (from tritonclient 2.51.0, see setup.sh) against the
# model-repository Triton peer (triton-pybackend, ports 8010/8011) and torchbridge (8200/8201) in the
# same run, interleaved: binary tensors over HTTP and gRPC (no JSON number parsing), batch-1 requests,
# concurrency 1/8/64. (PyTriton's server restricts the model-config/statistics endpoints that
# perf_analyzer needs to callers holding its per-run 'triton-access-token', so it is left out.)
# Writes results/pa_<peer>_<model>_<proto>_c<C>.csv (+ .log)
# Usage: bash run_pa.sh [models] [concurrencies]   (default: mlp, "1 8 64")
#   PA_REQUESTS (default 10000), PA_TRIALS (default 6), PA_STABILITY (default 25 %): requests per
#   measurement window, most trials per point and stability criterion; --quick in run_all.sh relaxes
#   them. Windows are counted in requests (count_windows): with time windows perf_analyzer never
#   finished a window at 64 clients against Triton's python backend (its p99 is tens of ms).
#   PA_MAX_THREADS (default: perf_analyzer's own, 16): its client threads. --async spreads the 64
#   requests in flight over them; on a 2-core machine 16 threads spend more of the shared CPU on
#   switching than on sending (see bench/RESULTS.md, session 8), so the same-run figures are given
#   for both 16 and 2. The value applies to every server of the run alike.
#   PA_TIMEOUT (default 150 s): a point that has not finished by then is killed and retried, up to
#   PA_ATTEMPTS (default 3) times in all, with stability 100 % (which any three windows meet). At 64
#   clients perf_analyzer 2.51's HTTP client now and then stops sending altogether (seen against both
#   Triton and torchbridge, server idle, no connection open) in its synchronous mode, so every run
#   uses --async (the same number of requests in flight, each client thread driving several).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PA=/tmp/peers-pa/bin/perf_analyzer
export LD_LIBRARY_PATH=/tmp/peers-pa/lib/python3.11/site-packages/nvidia/cuda_runtime/lib:${LD_LIBRARY_PATH:-}
mkdir -p "$HERE/results"
MODELS=${1:-mlp}
CONCS=${2:-1 8 64}
REQUESTS=${PA_REQUESTS:-10000}
TRIALS=${PA_TRIALS:-6}
STABLE=${PA_STABILITY:-25}   # percent; a point that never gets stable is retried once at 100
LIMIT=${PA_TIMEOUT:-150}
ATTEMPTS=${PA_ATTEMPTS:-3}
for m in $MODELS; do
  for c in $CONCS; do
    for proto in http grpc; do
      for peer in pybackend:8010:8011 torchbridge:8200:8201; do
        IFS=: read -r name hp gp <<<"$peer"
        url=127.0.0.1:$hp; [ $proto = grpc ] && url=127.0.0.1:$gp
        out=$HERE/results/pa_${name}_${m}_${proto}_c$c.csv
        rm -f "$out"
        pa() { timeout -k 5 "$LIMIT" $PA -m $m -u $url -i $proto -b 1 --concurrency-range $c \
                 --measurement-mode count_windows --measurement-request-count $REQUESTS --max-trials $TRIALS -s "$1" \
                 --async ${PA_MAX_THREADS:+--max-threads $PA_MAX_THREADS} --percentile 99 -f "$out" > "${out%.csv}.log" 2>&1; }
        stability=$STABLE
        for attempt in $(seq "$ATTEMPTS"); do
          pa "$stability" && break
          echo "attempt $attempt: no result at ${stability}% stability within ${LIMIT}s: $out"
          stability=100
          [ "$attempt" = "$ATTEMPTS" ] && echo "FAILED $out (see ${out%.csv}.log)"
        done
        tail -n +2 "$out" 2>/dev/null | awk -F, -v n="$name $m $proto c=$c" '{printf "%-30s %s infer/s  p50 %.2f ms  p99 %.2f ms\n", n, $2, $(NF-3)/1000, $NF/1000}'
      done
    done
  done
done
