#!/usr/bin/env bash
# The peer comparison, end to end, torchbridge included: venvs, oha, models, in-process limits, every
# server, the same load runs interleaved, perf_analyzer against Triton and torchbridge, the bare-HTTP
# ceiling, torchbridge's own bench (1-client overhead, MiniLM bridges), then results/tables.md.
# Only PyPI / crates.io / Debian packages are fetched; every server binds 127.0.0.1 only.
#
#   bash bench/peers/run_all.sh           # full: every peer, median of 3, ~50 min on a 2-core box
#   bash bench/peers/run_all.sh --quick   # triton-pybackend + fastapi + torchbridge, 1 rep, ~10 min
#   REPS=3 ... --quick                     # the same peers, median of 3 interleaved reps
#   SKIP_SETUP=1 ...                      # venvs and oha already there
#   TB_BIN=/path/to/torchbridge ...       # default: target/release/torchbridge, built if needed
#
# Run it on a quiet machine: the figures are only comparable within one run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QUICK=0
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    *) echo "usage: $0 [--quick]"; exit 2 ;;
  esac
done
export PEERS_RUN=/tmp/peers-run
RUN=$PEERS_RUN
mkdir -p "$RUN" "$HERE/results"
cd "$HERE"
rm -f results/*.json results/pa_*.csv results/pa_*.log

if [ $QUICK = 1 ]; then
  SETUP="main triton pa"
  PEERS=triton-pybackend,fastapi,torchbridge-onnx,torchbridge-torchscript,torchbridge-python,torchbridge-tract,torchbridge-candle
  SERVERS_ARGS=(--reps "${REPS:-1}" --secs-mlp 2 --secs-minilm 3 --conc 1,64)
  INPROC_ARGS=(--reps 1 --secs 0.3 --threads 2 --batches 1,32)
  PA_CONCS="1 64"; export PA_REQUESTS=3000 PA_TRIALS=4 PA_STABILITY=50
  CEILING_ARGS=(--reps 1 --secs 2 --conc 1,64)
  TB_SECS=2s
else
  SETUP="main triton pa mlserver"
  PEERS=triton-pytriton,triton-pybackend,torchserve-batch,torchserve-nobatch,fastapi,litserve-batch,litserve-nobatch,mlserver,torchbridge-onnx,torchbridge-torchscript,torchbridge-python,torchbridge-tract,torchbridge-candle
  SERVERS_ARGS=(--reps 3 --secs-mlp 5 --secs-minilm 8)
  INPROC_ARGS=(--reps 5 --secs 1.0 --threads 2,1)
  PA_CONCS="1 8 64"
  CEILING_ARGS=(--reps 3 --secs 5)
  TB_SECS=5s
fi

if [ -z "${SKIP_SETUP:-}" ]; then
  # shellcheck disable=SC2086
  bash setup.sh $SETUP
  [ -x /tmp/peers-oha/bin/oha ] || cargo install oha --version 1.16.0 --locked --root /tmp/peers-oha
fi
TB=${TB_BIN:-$ROOT/target/release/torchbridge}
if [ -z "${TB_BIN:-}" ]; then
  (cd "$ROOT" && source scripts/env.sh && cargo build --release -p torchbridge)
fi

[ -f models/minilm.onnx ] && [ -z "${REMAKE_MODELS:-}" ] || /tmp/peers-main/bin/python make_models.py
/tmp/peers-main/bin/python torchbridge_repo.py --out "$RUN/torchbridge_repo" --python-env "$ROOT/.venv"
/tmp/peers-main/bin/python -c "
import json,sys; sys.path.insert(0,'.'); import common
for m in ['mlp','minilm']: open('$RUN/'+m+'_b1.json','w').write(json.dumps(common.v2_request(m)))"

# 1. raw in-process limits (no servers running)
/tmp/peers-main/bin/python bench_inproc.py "${INPROC_ARGS[@]}" | tee results/inproc.log

# 2. servers (each in its own process group so that stop() ends exactly what we started)
PGIDS=()
start() { local name=$1; shift; setsid "$@" >"$RUN/$name.log" 2>&1 & PGIDS+=($!); }
stop() {
  for g in "${PGIDS[@]}"; do kill -CONT -- -"$g" 2>/dev/null; kill -- -"$g" 2>/dev/null || true; done
  [ $QUICK = 1 ] || bash srv_torchserve.sh stop >/dev/null 2>&1 || true
}
trap stop EXIT
export PEERS_DIR=$HERE
URLS=(8010/v2/models/minilm/infer 8090/v2/models/minilm/infer 8200/v2/models/minilm_py/infer)
/tmp/peers-triton/bin/python triton_repo.py build
start triton_repo /tmp/peers-triton/bin/python triton_repo.py serve 8010 8011 8012
start fastapi /tmp/peers-main/bin/python -m uvicorn srv_fastapi:app --host 127.0.0.1 --port 8090 --no-access-log --log-level warning
# torchbridge: the release binary, with the project's venv (libtorch, and torch for the python bridge)
start torchbridge bash -c "cd '$ROOT' && source scripts/env.sh && exec '$TB' serve \
  --model-repository '$RUN/torchbridge_repo' --host 127.0.0.1 --http-port 8200 --grpc-port 8201 --metrics-port 8202"
FREEZE=()
if [ $QUICK = 0 ]; then
  LIBDIR=$(/tmp/peers-triton/bin/python -c 'import sysconfig;print(sysconfig.get_config_var("LIBDIR"))')
  LD_LIBRARY_PATH=$LIBDIR start pytriton /tmp/peers-triton/bin/python srv_pytriton.py 8000 8001 8002
  start mlserver /tmp/peers-mlserver/bin/python srv_mlserver.py
  start litserve /tmp/peers-main/bin/python srv_litserve.py 8091
  LS_PG=${PGIDS[-1]}   # LitServe busy-polls when idle (~10% of the box): frozen while others are measured
  FREEZE=(--freeze "litserve:$LS_PG")
  bash srv_torchserve.sh start >"$RUN/torchserve_start.log" 2>&1
  URLS+=(8000/v2/models/minilm/infer 8080/predictions/minilm 8091/v2/models/minilm/infer 8100/v2/models/minilm/infer)
fi
freeze_litserve() { [ $QUICK = 1 ] || kill "-$1" -- -"$LS_PG"; }
# wait until every peer answers a real inference
for u in "${URLS[@]}"; do
  for i in $(seq 90); do
    curl -sf -m 30 -X POST "http://127.0.0.1:$u" -H 'Content-Type: application/json' --data-binary @"$RUN/minilm_b1.json" >/dev/null && break
    [ "$i" = 90 ] && echo "WARNING: $u does not answer (see $RUN/*.log)"
    sleep 2
  done
done
for m in mlp mlp_ts mlp_py mlp_tract minilm minilm_ts minilm_py minilm_candle; do   # torchbridge loads its models one by one
  for i in $(seq 90); do
    curl -sf -m 5 "http://127.0.0.1:8200/v2/models/$m/ready" >/dev/null && break
    [ "$i" = 90 ] && echo "WARNING: torchbridge model $m is not ready (see $RUN/torchbridge.log)"
    sleep 2
  done
done

# 3. the same JSON load (oha) against every peer, interleaved
/tmp/peers-main/bin/python run_servers.py "${SERVERS_ARGS[@]}" --peers "$PEERS" "${FREEZE[@]}" | tee results/servers.log
freeze_litserve STOP
# 4. perf_analyzer (binary HTTP, gRPC): Triton python backend and torchbridge, interleaved
bash run_pa.sh mlp "$PA_CONCS" | tee results/pa.log
freeze_litserve CONT
# 5. bare-HTTP ceiling (health endpoints, no model)
/tmp/peers-main/bin/python run_ceiling.py "${CEILING_ARGS[@]}" "${FREEZE[@]}" | tee results/http_ceiling.log
freeze_litserve STOP
# 6. torchbridge's own bench against the same server: 1-client overhead over the in-process call
#    (binary HTTP and gRPC vs the onnx bridge in process)
"$TB" bench --model mlp --url 127.0.0.1:8200 --grpc-url 127.0.0.1:8201 --protocol http-binary,grpc,http-json \
  --concurrency 1 --duration "$TB_SECS" --model-dir "$RUN/torchbridge_repo/mlp" --bridges onnx \
  --json > results/tb_mlp_c1.json
# 7. every bridge in process, one caller, from one directory holding every form of the model
#    (tract cannot optimise this MiniLM export; candle reads MiniLM's own files)
inproc() {  # model bridges batches
  (cd "$ROOT" && source scripts/env.sh && "$TB" bench --model-dir "$RUN/torchbridge_repo_forms/$1" \
    --bridges "$2" --batch "$3" --concurrency 1 --duration "$TB_SECS" --warmup-requests 5 \
    --json > "$HERE/results/tb_$1_inproc.json") || echo "WARNING: $1 in process failed (above)"
}
inproc mlp "${MLP_BRIDGES:-python,torchscript,onnx,tract}" 1,32
inproc minilm "${MINILM_BRIDGES:-python,torchscript,onnx,candle}" 1,8,32
# 8. MiniLM served at 16 clients through the bridge that was fastest in process
best=$(python3 -c "
import json; b = json.load(open('results/tb_minilm_inproc.json'))['in_process_best']['bridge']
print('minilm' + {'onnx': '', 'torchscript': '_ts', 'python': '_py', 'candle': '_candle'}[b])" || echo minilm)
"$TB" bench --model "$best" --url 127.0.0.1:8200 --protocol http-binary --concurrency 16 \
  --duration "${TB_MINILM_SECS:-10s}" --warmup-requests 32 --json > results/tb_minilm_served.json
freeze_litserve CONT
python3 make_tables.py > results/tables.md
cat results/tables.md
echo "done; results in $HERE/results"
