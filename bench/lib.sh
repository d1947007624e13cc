# Sourced by the bench scripts: strict mode, the repository root as working directory, the
# project's environment (scripts/env.sh), $TB, the torchbridge binary (TB_BIN, else the
# release build, built when missing), and wait_ready.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/env.sh
TB=${TB_BIN:-$ROOT/target/release/torchbridge}
[ -x "$TB" ] || cargo build --release -p torchbridge

# wait_ready PORT PID LOG: returns once the server on PORT is ready (every model loaded or
# failed); exits with its log if process PID ends first or after 2 minutes.
wait_ready() {
  for _ in $(seq 480); do
    curl -sf "127.0.0.1:$1/v2/health/ready" > /dev/null && return 0
    kill -0 "$2" 2> /dev/null || { cat "$3"; exit 1; }
    sleep 0.25
  done
  echo "the server on port $1 was not ready after 2 minutes (log: $3)"; exit 1
}
