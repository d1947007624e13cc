#!/usr/bin/env bash
# Soak: the release server under saturating load for a bounded time, with a python
# model that raises on a fraction of its calls. Reports requests sent and answered,
# errors by kind, requests lost (must be 0) and the server's resident memory over time.
#
#   scripts/soak.sh [SECONDS]        # default 180; e.g. `nice scripts/soak.sh 60`
#
# Environment: SOAK_CONCURRENCY (clients in flight, default 16), SOAK_PROTOCOL
# (http-json, http-binary or grpc; default http-binary), SOAK_OUT (where the report,
# the bench's JSON, the RSS samples and the server log go; default target/soak),
# SOAK_NO_BUILD=1 (use target/release/torchbridge as it is).
#
# Loopback only: the server listens on free 127.0.0.1 ports and is stopped (SIGTERM,
# then SIGKILL if it hangs) when the script ends, however it ends. The model is
# `py_flaky` from tests/fixtures/make_fixtures.py: Y = X, except that every 10th call
# of each instance raises (HTTP 500), so about 10% of the requests fail by design.
# Exits 1 if a request was lost or the server did not exit cleanly.
set -euo pipefail

seconds="${1:-180}"
concurrency="${SOAK_CONCURRENCY:-16}"
protocol="${SOAK_PROTOCOL:-http-binary}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${SOAK_OUT:-$root/target/soak}"
cd "$root"
# shellcheck source=/dev/null
source scripts/env.sh >/dev/null

if [[ -z "${SOAK_NO_BUILD:-}" ]]; then
    echo "soak: building the release binary" >&2
    cargo build --release -p torchbridge --quiet
fi
bin="$root/target/release/torchbridge"

rm -rf "$out" && mkdir -p "$out"
work="$(mktemp -d)"
server_pid=""
sampler_pid=""
cleanup() {
    if [[ -n "$sampler_pid" ]]; then kill "$sampler_pid" 2>/dev/null || true; fi
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "soak: generating the fixture model" >&2
python tests/fixtures/make_fixtures.py "$work/fixtures" >/dev/null
mkdir -p "$work/repo"
cp -r "$work/fixtures/py_flaky" "$work/repo/py_flaky"

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http="$(free_port)"; grpc="$(free_port)"; metrics="$(free_port)"
while [[ "$grpc" == "$http" ]]; do grpc="$(free_port)"; done
while [[ "$metrics" == "$http" || "$metrics" == "$grpc" ]]; do metrics="$(free_port)"; done

"$bin" serve --model-repository "$work/repo" --host 127.0.0.1 --http-port "$http" \
    --grpc-port "$grpc" --metrics-port "$metrics" >"$out/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
    kill -0 "$server_pid" 2>/dev/null || { cat "$out/serve.log" >&2; exit 1; }
    curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null && break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null

stats() { curl -sf "http://127.0.0.1:$http/v2/models/py_flaky/stats"; }
stats >"$out/stats-before.json"

# One sample a second: seconds since start, VmRSS in KiB.
(
    start=$(date +%s)
    while kill -0 "$server_pid" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || true)
        [[ -n "$rss" ]] && echo "$(($(date +%s) - start)) $rss"
        sleep 1
    done
) >"$out/rss.tsv" &
sampler_pid=$!

echo "soak: $seconds s of $protocol at concurrency $concurrency against pid $server_pid" >&2
"$bin" bench --model py_flaky --url "127.0.0.1:$http" --grpc-url "127.0.0.1:$grpc" \
    --protocol "$protocol" --concurrency "$concurrency" --duration "${seconds}s" \
    --request-timeout 30s --json >"$out/bench.json"

stats >"$out/stats-after.json"
sleep 1
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=""
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
echo "$status" >"$out/server-exit-code"

python - "$out" "$seconds" "$concurrency" "$protocol" <<'EOF'
import json
import sys
from pathlib import Path

out, seconds, concurrency, protocol = Path(sys.argv[1]), *sys.argv[2:]
run = json.loads((out / "bench.json").read_text())["server"][0]
before = json.loads((out / "stats-before.json").read_text())["model_stats"][0]
after = json.loads((out / "stats-after.json").read_text())["model_stats"][0]
exit_code = int((out / "server-exit-code").read_text())
samples = [tuple(map(int, line.split())) for line in (out / "rss.tsv").read_text().splitlines()
           if line.strip()]

def served(stats, kind):
    return stats["inference_stats"][kind]["count"]

kinds = run["errors_by_kind"]
# A request is lost when the bench sent it and got no HTTP answer: a timeout or a
# transport failure. Every other error kind is an answer (a status code).
lost = sum(n for kind, n in kinds.items() if kind == "timeout" or kind.startswith("transport"))
sent = run["requests"]
answered = sent - lost
server_ok = served(after, "success") - served(before, "success")
server_fail = served(after, "fail") - served(before, "fail")
mib = lambda kib: f"{kib / 1024:.1f} MiB"
lines = [
    f"# Soak: py_flaky, {protocol}, concurrency {concurrency}, {seconds} s",
    "",
    f"- requests sent (measured run): {sent}",
    f"- answered: {answered} ({run['requests_per_s']:.0f} successful requests/s; "
    f"p50 {run['latency_ms']['p50']:.2f} ms, p99 {run['latency_ms']['p99']:.2f} ms, "
    f"max {run['latency_ms']['max']:.2f} ms)",
    f"- succeeded: {sent - run['errors']}; errors by kind: "
    + (", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) or "none"),
    f"- error rate: {run['errors'] / max(sent, 1):.2%} (the model raises on 1 call in 10)",
    f"- **requests lost (sent - answered): {lost}**",
    f"- the server's own count over the same time (warm-up and probe included): "
    f"{server_ok} succeeded, {server_fail} failed",
    f"- server exit code after SIGTERM: {exit_code}",
]
if samples:
    start, peak, end = samples[0][1], max(s[1] for s in samples), samples[-1][1]
    lines += [
        f"- resident memory: start {mib(start)}, peak {mib(peak)}, end {mib(end)} "
        f"({len(samples)} samples, one a second)",
        "",
        "| t (s) | RSS (MiB) |",
        "|---:|---:|",
    ]
    step = max(1, len(samples) // 12)
    for t, kib in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(f"| {t} | {kib / 1024:.1f} |")
report = "\n".join(lines) + "\n"
(out / "report.md").write_text(report)
print(report)
sys.exit(1 if lost or exit_code != 0 else 0)
EOF
