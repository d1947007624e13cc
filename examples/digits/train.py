"""Train a small MLP on scikit-learn's bundled 8x8 digits and write it as a torchbridge model.

    .venv/bin/python examples/digits/train.py [REPO_DIR]      # default: examples/digits/models

Writes REPO_DIR/digits/ (config.toml with backend "onnx", and version 1 holding the same
network as model.py + state_dict.pt, model.pt (TorchScript) and model.onnx) through
tools/modelrepo.py, and the held-out set to REPO_DIR/digits_testset/: images.npy (float32
[N, 64], pixels scaled to [0, 1]), labels.npy (int64 [N]), predictions.npy (int64 [N], the
eager torch model's argmax) and python_accuracy.txt, so the Rust example can check
prediction-for-prediction parity. Deterministic (fixed seed and split), a few seconds on CPU.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools"))
import modelrepo  # noqa: E402


class DigitsMLP(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.layers(x)


def main(repo: Path):
    start = time.perf_counter()
    torch.manual_seed(0)
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)  # pixel values are 0..16
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train)

    net = DigitsMLP()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loader = torch.Generator().manual_seed(0)  # fixed minibatch order
    for _ in range(40):
        for idx in torch.randperm(len(x_train), generator=loader).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x_train[idx]), y_train[idx]).backward()
            opt.step()
    net.eval()

    with torch.no_grad():
        predictions = net(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    accuracy = float((predictions == y_test).mean())
    print(f"python test accuracy: {accuracy:.4f} ({len(y_test)} held-out images)")

    inputs, outputs = [("INPUT0", "FP32", [64])], [("OUTPUT0", "FP32", [10])]
    modelrepo.write_model(
        repo, "digits", net, (torch.from_numpy(x_test[:8]),), inputs=inputs, outputs=outputs,
        max_batch_size=64, forms=["python", "torchscript", "onnx"], backend="onnx",
        model_py=modelrepo.handler_source(DigitsMLP, {}, ["INPUT0"], ["OUTPUT0"],
                                          doc="8x8 digits classifier, logits out"))

    # The Rust example checks prediction parity on the whole test set; check it here too,
    # in chunks of max_batch_size, so a borderline logit would show up now, not there.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(repo / "digits/1/model.onnx"))
    scripted = torch.jit.load(str(repo / "digits/1/model.pt"))
    chunks = np.array_split(x_test, range(64, len(x_test), 64))
    for form, run in (("onnx", lambda c: sess.run(None, {"INPUT0": c})[0]),
                      ("torchscript", lambda c: scripted(torch.from_numpy(c)).detach().numpy())):
        form_predictions = np.concatenate([run(c).argmax(axis=1) for c in chunks])
        mismatches = int((form_predictions != predictions).sum())
        print(f"{form} form: {mismatches} prediction mismatches vs eager torch")
        assert mismatches == 0, f"{form} form disagrees with eager torch"

    testset = repo / "digits_testset"
    testset.mkdir(parents=True, exist_ok=True)
    np.save(testset / "images.npy", np.ascontiguousarray(x_test))
    np.save(testset / "labels.npy", np.ascontiguousarray(y_test))
    np.save(testset / "predictions.npy", predictions.astype(np.int64))
    (testset / "python_accuracy.txt").write_text(f"{accuracy:.4f}\n")
    print(f"wrote {repo / 'digits'} and {testset} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]) if len(sys.argv) == 2 else HERE / "models")
