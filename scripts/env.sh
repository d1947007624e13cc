# Source this to build or run torchbridge by hand: `source scripts/env.sh`.
# torch-sys finds torch through the `python` first on PATH, so the project's
# virtualenv (made by scripts/setup) goes first.
_tb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_tb_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
unset _tb_root
