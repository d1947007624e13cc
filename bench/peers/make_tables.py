"""Render results/*.json (+ perf_analyzer CSVs) as the markdown tables pasted into bench/RESULTS.md,
with the ratios the targets are read from: torchbridge / best peer (same load generator, same run),
served / bare-HTTP ceiling, python bridge / torchscript bridge, 1-client latency over in-process,
MiniLM served rows/s / the fastest bridge's in-process limit.
Usage: python3 make_tables.py > results/tables.md"""
import csv
import glob
import json
import os
import pathlib

R = pathlib.Path(__file__).resolve().parent / "results"


def inproc():
    d = json.loads((R / "inproc.json").read_text())
    print("| model | backend | batch | threads | rows/s median [min–max] | ms/call p50 median [min–max] | ms/call p99 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in d["rows"]:
        print(f"| {r['model']} | {r['backend']} | {r['batch']} | {r['threads']} | "
              f"{r['rows_per_s_median']:,.0f} [{r['rows_per_s_min']:,.0f}–{r['rows_per_s_max']:,.0f}] | "
              f"{r['call_ms_p50_median']:.3f} [{r['call_ms_p50_min']:.3f}–{r['call_ms_p50_max']:.3f}] | "
              f"{r['call_ms_p99_median']:.3f} |")


def servers():
    d = json.loads((R / "servers.json").read_text())
    for model in ("mlp", "minilm"):
        rows = [s for s in d["summary"] if s["model"] == model]
        if not rows:
            continue
        print(f"\n**{model}** (batch-1 requests; median of {rows[0]['reps']} interleaved runs, [min–max])\n")
        print("| peer | conc | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|")
        for s in sorted(rows, key=lambda s: (s["conc"], -s["rps"][0])):
            print(f"| {s['peer']} | {s['conc']} | {s['rps'][0]:,.1f} [{s['rps'][1]:,.1f}–{s['rps'][2]:,.1f}] | "
                  f"{s['p50_ms'][0]:.2f} [{s['p50_ms'][1]:.2f}–{s['p50_ms'][2]:.2f}] | "
                  f"{s['p99_ms'][0]:.2f} [{s['p99_ms'][1]:.2f}–{s['p99_ms'][2]:.2f}] |")
        print(f"\n**{model}: torchbridge against the best peer** (medians; oha JSON, same run)\n")
        print("| conc | best peer | its req/s | torchbridge (bridge) | req/s | × best peer | p99/p50 | python / torchscript |")
        print("|---:|---|---:|---|---:|---:|---:|---:|")
        for c in sorted({s["conc"] for s in rows}):
            at = {s["peer"]: s for s in rows if s["conc"] == c}
            peers = [s for p, s in at.items() if not p.startswith("torchbridge")]
            tbs = [s for p, s in at.items() if p.startswith("torchbridge")]
            if not peers or not tbs:
                continue
            best = max(peers, key=lambda s: s["rps"][0])
            tb = at.get("torchbridge-onnx") or max(tbs, key=lambda s: s["rps"][0])
            py, ts = at.get("torchbridge-python"), at.get("torchbridge-torchscript")
            pyts = f"{py['rps'][0] / ts['rps'][0]:.2f}" if py and ts and ts["rps"][0] else "–"
            print(f"| {c} | {best['peer']} | {best['rps'][0]:,.0f} | {tb['peer']} | {tb['rps'][0]:,.0f} | "
                  f"{tb['rps'][0] / best['rps'][0]:.2f} | {tb['p99_ms'][0] / max(tb['p50_ms'][0], 1e-9):.1f} | {pyts} |")


def pa():
    files = sorted(glob.glob(str(R / "pa_*.csv")), key=lambda f: (f.split("_")[-2], int(f.rsplit("_c", 1)[1][:-4])))
    if not files:
        return
    ceil = ceiling_best()
    print("\n| server | model | protocol | conc | infer/s | p50 ms | p99 ms | × triton | of HTTP ceiling |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    got = {}
    for f in files:
        _, peer, model, proto, c = pathlib.Path(f).stem.split("_")
        with open(f) as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            got[(peer, model, proto, int(c[1:]))] = rows[0]
    for (peer, model, proto, c), r in sorted(got.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][0])):
        rate = float(r["Inferences/Second"])
        triton = got.get(("pybackend", model, proto, c))
        vs = f"{rate / float(triton['Inferences/Second']):.2f}" if peer != "pybackend" and triton else ""
        of_ceiling = f"{rate / ceil[c]:.0%}" if c in ceil else "–"
        name = "triton-pybackend" if peer == "pybackend" else peer
        print(f"| {name} | {model} | {proto} (binary tensors) | {c} | {rate:,.0f} | "
              f"{float(r['p50 latency']) / 1000:.2f} | {float(r['p99 latency']) / 1000:.2f} | {vs} | {of_ceiling} |")


def ceiling_best():
    """conc -> the best bare-HTTP req/s of any server in this run (the ceiling)."""
    p = R / "http_ceiling.json"
    if not p.exists():
        return {}
    best = {}
    for s in json.loads(p.read_text())["summary"]:
        best[s["conc"]] = max(best.get(s["conc"], 0), s["rps"][0])
    return best


def tb_bench():
    p = R / "tb_mlp_c1.json"
    if p.exists():
        d = json.loads(p.read_text())
        inproc = {(r["bridge"], r["concurrency"]): r for r in d["in_process"]}
        base = inproc.get(("onnx", 1))
        print("| mlp, 1 client | req/s | p50 ms | p99 ms | p50 over in-process (µs) |")
        print("|---|---:|---:|---:|---:|")
        if base:
            print(f"| onnx in process | {base['requests_per_s']:,.0f} | {base['latency_ms']['p50']:.3f} | "
                  f"{base['latency_ms']['p99']:.3f} | – |")
        for r in d["server"]:
            over = (r["latency_ms"]["p50"] - base["latency_ms"]["p50"]) * 1e3 if base else float("nan")
            print(f"| served, {r['protocol']} | {r['requests_per_s']:,.0f} | {r['latency_ms']['p50']:.3f} | "
                  f"{r['latency_ms']['p99']:.3f} | {over:.0f} |")
    bridges()
    pi, ps = R / "tb_minilm_inproc.json", R / "tb_minilm_served.json"
    if pi.exists():
        d = json.loads(pi.read_text())
        print("\n| MiniLM in process (1 caller) | batch | rows/s | ms/call p50 |")
        print("|---|---:|---:|---:|")
        for r in d["in_process"]:
            print(f"| {r['bridge']} | {r['batch']} | {r['rows_per_s']:,.1f} | {r['latency_ms']['p50']:.1f} |")
        best = d.get("in_process_best")
        if best:
            print(f"\nfastest bridge: **{best['bridge']}** at batch {best['batch']}: {best['rows_per_s']:,.1f} rows/s")
        if ps.exists() and best:
            for r in json.loads(ps.read_text())["server"]:
                served_model = json.loads(ps.read_text())["model"]
                print(f"\nMiniLM served as `{served_model}` ({r['protocol']}, {r['concurrency']} clients, batch-1 requests): "
                      f"{r['rows_per_s']:,.1f} rows/s = **{r['rows_per_s'] / best['rows_per_s']:.0%}** of that "
                      f"limit (target ≥ 90%); p50 {r['latency_ms']['p50']:.0f} ms, p99 {r['latency_ms']['p99']:.0f} ms, "
                      f"errors {r['errors']}")


def bridges():
    """Per model, every bridge in process (one caller, `torchbridge bench --bridges`) next to the same
    bridge served (oha JSON, batch-1 requests, from servers.json): the README's bridge table."""
    served = {}
    sp = R / "servers.json"
    if sp.exists():
        for s in json.loads(sp.read_text())["summary"]:
            if s["peer"].startswith("torchbridge-"):
                served[(s["model"], s["peer"][len("torchbridge-"):], s["conc"])] = s
    for model in ("mlp", "minilm"):
        p = R / f"tb_{model}_inproc.json"
        if not p.exists():
            continue
        runs = json.loads(p.read_text())["in_process"]
        batches = sorted({r["batch"] for r in runs})
        names = sorted({r["bridge"] for r in runs} | {b for (m, b, _) in served if m == model})
        concs = sorted({c for (m, _, c) in served if m == model})
        print(f"\n| {model}: bridge | " + " | ".join(f"in process, batch {b} (rows/s)" for b in batches)
              + "".join(f" | served, {c} clients (req/s)" for c in concs) + " |")
        print("|---|" + "---:|" * (len(batches) + len(concs)))
        for name in names:
            cells = []
            for b in batches:
                r = next((r for r in runs if r["bridge"] == name and r["batch"] == b), None)
                cells.append(f"{r['rows_per_s']:,.0f}" if r and not r["errors"] else "–")
            for c in concs:
                s = served.get((model, name, c))
                cells.append(f"{s['rps'][0]:,.1f}" if s else "–")
            print(f"| {name} | " + " | ".join(cells) + " |")


def ceiling():
    p = R / "http_ceiling.json"
    if not p.exists():
        return
    d = json.loads(p.read_text())
    print("\n| target | conc | req/s median [min–max] | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for s in d["summary"]:
        print(f"| {s['peer']} | {s['conc']} | {s['rps'][0]:,.0f} [{s['rps'][1]:,.0f}–{s['rps'][2]:,.0f}] | "
              f"{s['p50_ms'][0]:.2f} | {s['p99_ms'][0]:.2f} |")


if __name__ == "__main__":
    print("### In-process\n")
    inproc()
    print("\n### Servers (oha, KServe-v2 JSON)\n")
    servers()
    print("\n### perf_analyzer: Triton python backend and torchbridge (onnx), binary tensors\n")
    pa()
    print("\n### HTTP ceiling\n")
    ceiling()
    print("\n### torchbridge bench (same server, same run)\n")
    tb_bench()
