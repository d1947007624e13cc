# Sourced by scripts/setup and scripts/test: makes the project's virtualenv if it is
# missing or its requirements changed, then puts it first on PATH for cargo.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"

# make_venv DIR REQUIREMENTS: (re)installs when the requirements file changed.
make_venv() {
    local stamp="$1/.requirements.sha256" want
    want="$(sha256sum "$2" | cut -d' ' -f1)"
    if [ ! -x "$1/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "==> making $1 with $("$python" --version) and $2"
        "$python" -m venv "$1"
        "$1/bin/python" -m pip install --quiet --upgrade pip
        "$1/bin/python" -m pip install --quiet --resume-retries 50 --retries 10 -r "$2"
        echo "$want" > "$stamp"
    fi
}
# perf_analyzer (in the tritonclient wheel) needs Debian's libb64.
if ! ldconfig -p | grep -q libb64.so.0d; then
    echo "==> installing libb64-0d (Debian) for perf_analyzer"
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq libb64-0d >/dev/null
fi
make_venv .venv requirements.txt
make_venv .venv-clients requirements-clients.txt
source scripts/env.sh
