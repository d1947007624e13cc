"""Writes an MLP (784 -> hidden... -> 10, FP32 `x` -> `y`) exported to ONNX as model repository
entry REPO/NAME/1/model.onnx, with a config.toml for the onnx bridge (max batch 32) that ends with
the TOML given by --tail. The bench scripts (one_client.sh, overload.sh) serve it.

    python bench/mlp_repo.py REPO NAME --hidden 256 --threads 1 --tail '[batching]...'
"""

import argparse
import pathlib
import shutil

import torch


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("repo", type=pathlib.Path)
    args.add_argument("name")
    args.add_argument("--hidden", type=int, nargs="+", required=True, help="hidden layer widths")
    args.add_argument("--threads", type=int, default=1, help="the model's intra-op threads")
    args.add_argument("--tail", default="", help="TOML appended to config.toml")
    a = args.parse_args()

    model = a.repo / a.name
    shutil.rmtree(model, ignore_errors=True)
    (model / "1").mkdir(parents=True)
    torch.manual_seed(0)
    layers, width = [], 784
    for hidden in a.hidden:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10)).eval()
    torch.onnx.export(net, (torch.randn(2, 784),), str(model / "1" / "model.onnx"),
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    (model / "config.toml").write_text(f"""backend = "onnx"
max_batch_size = 32
threads = {a.threads}
[[input]]
name = "x"
datatype = "FP32"
dims = [784]
[[output]]
name = "y"
datatype = "FP32"
dims = [10]
{a.tail}""")


if __name__ == "__main__":
    main()
