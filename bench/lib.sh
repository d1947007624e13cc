# Sourced by the bench scripts: strict mode, the repository root as working directory, the
# project's environment (scripts/env.sh), and $TB, the torchbridge binary (TB_BIN, else the
# release build, built when missing).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/env.sh
TB=${TB_BIN:-$ROOT/target/release/torchbridge}
[ -x "$TB" ] || cargo build --release -p torchbridge
