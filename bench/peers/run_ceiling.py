"""HTTP ceiling on this box with this load generator: oha GET against trivial health endpoints
(no model, no body) of a C++ server (Triton) and a Python one (uvicorn+FastAPI). Gives the req/s that
*any* server on these 2 shared cores can reach with oha eating part of the CPU.
Usage: /tmp/peers-main/bin/python run_ceiling.py [--freeze litserve:PGID]  -> results/http_ceiling.json
"""
import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import time

HERE = pathlib.Path(__file__).resolve().parent
OHA = "/tmp/peers-oha/bin/oha"
TARGETS = {"triton GET /v2/health/ready (C++)": "http://127.0.0.1:8010/v2/health/ready",
           "torchbridge GET /v2/health/ready (Rust)": "http://127.0.0.1:8200/v2/health/ready",
           "fastapi GET /v2/health/ready (Python)": "http://127.0.0.1:8090/v2/health/ready"}


def run(url, c, secs):
    cmd = [OHA, "--no-tui", "-z", f"{secs}s", "-w", "-c", str(c), "--output-format", "json",
           "--worker-threads", "1", url]
    d = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout)
    time.sleep(0.5)
    ok = d.get("statusCodeDistribution", {}).get("200", 0)
    return ok / d["summary"]["total"], d["latencyPercentiles"]["p50"] * 1e3, d["latencyPercentiles"]["p99"] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--freeze", default="")
    ap.add_argument("--conc", default="1,8,64")
    a = ap.parse_args()
    for x in [x for x in a.freeze.split(",") if x]:
        os.killpg(int(x.split(":")[1]), signal.SIGSTOP)
    raw = {}
    try:
        for rep in range(a.reps):
            for c in [int(c) for c in a.conc.split(",")]:
                for name, url in TARGETS.items():
                    run(url, c, 1)
                    r = run(url, c, a.secs)
                    raw.setdefault((name, c), []).append(r)
                    print(f"rep{rep} c={c:<3d} {name:40s} {r[0]:9.0f} req/s p50 {r[1]:.3f} ms p99 {r[2]:.3f} ms", flush=True)
    finally:
        for x in [x for x in a.freeze.split(",") if x]:
            os.killpg(int(x.split(":")[1]), signal.SIGCONT)
    summ = []
    for (name, c), rs in raw.items():
        f = lambda i: (statistics.median(r[i] for r in rs), min(r[i] for r in rs), max(r[i] for r in rs))
        summ.append(dict(peer=name, conc=c, rps=f(0), p50_ms=f(1), p99_ms=f(2)))
    (HERE / "results" / "http_ceiling.json").write_text(json.dumps(dict(summary=summ), indent=1))


if __name__ == "__main__":
    main()
