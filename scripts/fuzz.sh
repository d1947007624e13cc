#!/usr/bin/env bash
# Runs each cargo-fuzz target for a while and reports what it found.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 300 s, every target)
#
# Targets live in fuzz/ (see docs/reliability.md); the seed corpus in fuzz/corpus/<target>/
# is read, never written: new inputs go to fuzz/work/<target>/, crashes to
# fuzz/artifacts/<target>/. The toolchain is stable, so nightly-only flags are unlocked
# with RUSTC_BOOTSTRAP=1 and the build uses no sanitizer (-s none): libFuzzer's coverage
# guidance, Rust's own checks (debug assertions, overflow checks) and the targets'
# assertions find the bugs. Needs `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(http_request grpc_request model_config)
fi
command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 2; }

export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --debug-assertions --release)
for target in "${targets[@]}"; do cargo fuzz build "${flags[@]}" "$target"; done

status=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
    log="fuzz/work/$target.log"
    echo "== $target: ${seconds}s"
    if cargo fuzz run "${flags[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="FOUND A CRASH (see $log and fuzz/artifacts/$target/)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "   $result; executions: $runs; $cov; corpus: $(ls "fuzz/work/$target" | wc -l) inputs"
done
exit $status
