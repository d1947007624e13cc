"""Drive every running peer (torchbridge included) with the same load generator (oha, HTTP/1.1 keep-alive, one connection per
concurrent client) and the same KServe-v2 JSON body (batch 1 per request), interleaved: for each rep,
model and concurrency, every peer gets a 1 s warm-up and then a time-bounded run (oha -z S -w: after S
seconds no new requests, in-flight ones are awaited), peers in rotating order.

Assumes the servers are up (see run_all.sh). Writes results/servers.json and prints a summary.
Usage: /tmp/peers-main/bin/python run_servers.py [--reps 3] [--secs-mlp 5] [--secs-minilm 8]
"""
import argparse
import json
import os
import pathlib
import signal
import statistics
import subprocess
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
RUN = pathlib.Path("/tmp/peers-run")
OHA = "/tmp/peers-oha/bin/oha"

PEERS = {  # name -> url template
    "triton-pytriton": "http://127.0.0.1:8000/v2/models/{m}/infer",
    "triton-pybackend": "http://127.0.0.1:8010/v2/models/{m}/infer",
    "torchserve-batch": "http://127.0.0.1:8080/predictions/{m}",
    "torchserve-nobatch": "http://127.0.0.1:8080/predictions/{m}_nb",
    "fastapi": "http://127.0.0.1:8090/v2/models/{m}/infer",
    "litserve-batch": "http://127.0.0.1:8091/v2/models/{m}/infer",
    "litserve-nobatch": "http://127.0.0.1:8091/v2/models/{m}_nb/infer",
    "mlserver": "http://127.0.0.1:8100/v2/models/{m}/infer",
    # torchbridge serve (release build), repository from torchbridge_repo.py: one model per bridge
    "torchbridge-onnx": "http://127.0.0.1:8200/v2/models/{m}/infer",
    "torchbridge-torchscript": "http://127.0.0.1:8200/v2/models/{m}_ts/infer",
    "torchbridge-python": "http://127.0.0.1:8200/v2/models/{m}_py/infer",
    "torchbridge-tract": "http://127.0.0.1:8200/v2/models/{m}_tract/infer",    # mlp only
    "torchbridge-candle": "http://127.0.0.1:8200/v2/models/{m}_candle/infer",  # minilm only
}


def up(url, body):
    try:
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=60).status == 200
    except Exception:
        return False


def oha(url, body_path, conc, secs, out=None):
    # -w: requests in flight at the deadline are waited for (not abandoned), so the server is idle again
    # when the next peer starts; otherwise a slow model keeps burning CPU on abandoned work.
    cmd = [OHA, "--no-tui", "-z", f"{secs}s", "-w", "-c", str(conc), "-m", "POST", "-T", "application/json",
           "-D", str(body_path), "--output-format", "json", "--worker-threads", "1", "-t", "120s", url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 180)
    time.sleep(0.5)
    if out is None:
        return None
    d = json.loads(r.stdout)
    s, p = d["summary"], d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    # throughput of completed 200s over oha's total time (which includes the -w tail)
    return dict(rps=ok / s["total"], p50_ms=(p["p50"] or 0) * 1e3, p99_ms=(p["p99"] or 0) * 1e3,
                ok=ok, codes=codes, errors=d.get("errorDistribution", {}), cmd=" ".join(cmd))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs-mlp", type=int, default=5)
    ap.add_argument("--secs-minilm", type=int, default=8)
    ap.add_argument("--models", default="mlp,minilm")
    ap.add_argument("--conc", default="1,8,64")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--out", default=str(HERE / "results" / "servers.json"))
    ap.add_argument("--freeze", default="", help="PREFIX:PGID[,...]: process groups that busy-poll when idle "
                    "(LitServe's batch collector) are SIGSTOPped except while a peer named PREFIX* is measured")
    a = ap.parse_args()
    freeze = [(x.split(":")[0], int(x.split(":")[1])) for x in a.freeze.split(",") if x]

    def thaw_only(peer):
        for prefix, pg in freeze:
            os.killpg(pg, signal.SIGCONT if peer and peer.startswith(prefix) else signal.SIGSTOP)

    models = a.models.split(",")
    concs = [int(c) for c in a.conc.split(",")]
    bodies = {m: RUN / f"{m}_b1.json" for m in models}
    live = {}
    for _, pg in freeze:
        os.killpg(pg, signal.SIGCONT)
    for m in models:
        body = bodies[m].read_bytes()
        live[m] = [p for p in a.peers.split(",") if up(PEERS[p].format(m=m), body)]
        print(f"{m}: live peers {live[m]}; not answering: {sorted(set(a.peers.split(',')) - set(live[m]))}", flush=True)
    raw = []
    t0 = time.time()
    for rep in range(a.reps):
        for m in models:
            secs = a.secs_mlp if m == "mlp" else a.secs_minilm
            for c in concs:
                order = live[m][rep % len(live[m]):] + live[m][:rep % len(live[m])]
                for p in order:
                    url = PEERS[p].format(m=m)
                    thaw_only(p)
                    oha(url, bodies[m], c, 1)  # warm-up
                    r = oha(url, bodies[m], c, secs, out=True)
                    r.update(peer=p, model=m, conc=c, rep=rep, secs=secs)
                    raw.append(r)
                    print(f"[{time.time() - t0:6.0f}s] rep{rep} {m:6s} c={c:<3d} {p:18s} {r['rps']:9.1f} req/s "
                          f"p50 {r['p50_ms']:8.2f} ms p99 {r['p99_ms']:8.2f} ms ok={r['ok']} codes={r['codes']} "
                          f"err={r['errors']}", flush=True)
    thaw_only(None)
    summary = []
    for m in models:
        for c in concs:
            for p in live[m]:
                rs = [r for r in raw if r["peer"] == p and r["model"] == m and r["conc"] == c]
                f = lambda k: (statistics.median([r[k] for r in rs]), min(r[k] for r in rs), max(r[k] for r in rs))
                summary.append(dict(peer=p, model=m, conc=c, rps=f("rps"), p50_ms=f("p50_ms"), p99_ms=f("p99_ms"),
                                    reps=len(rs)))
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(summary=summary, raw=raw), indent=1))
    print("\nmodel  conc peer               req/s median [min-max]        p50 ms median [min-max]     p99 ms median")
    for s in summary:
        print(f"{s['model']:6s} {s['conc']:<4d} {s['peer']:18s} {s['rps'][0]:8.1f} [{s['rps'][1]:.1f}-{s['rps'][2]:.1f}]"
              f"   {s['p50_ms'][0]:8.2f} [{s['p50_ms'][1]:.2f}-{s['p50_ms'][2]:.2f}]   {s['p99_ms'][0]:8.2f}")


if __name__ == "__main__":
    main()
