"""torchbridge.export of several model shapes, each form loaded back through
torchbridge.Model (every bridge) and compared with the eager module."""

import json
import os
import math
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import gelu

import torchbridge

BRIDGES = ("python", "torchscript", "onnx")


class MLP(nn.Module):
    def __init__(self, n_in=16, hidden=32, n_out=4):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))

    def forward(self, x):
        return self.layers(x)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.head = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = nn.functional.max_pool2d(x, 2)
        return self.head(x.flatten(1))


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(5, 2)

    def forward(self, x, y):
        return self.a(x) + self.b(y), torch.tanh(y)


class TokenModel(nn.Module):
    def __init__(self, vocab=50, dim=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, 3)

    def forward(self, ids):
        return self.out(self.embed(ids).mean(dim=1))


def check_every_bridge(path, module, example, names):
    with torch.no_grad():
        want = module(*example)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    feed = {name: t.numpy() for name, t in zip(names, example, strict=True)}
    for bridge in BRIDGES:
        model = torchbridge.Model.load(path, bridge=bridge)
        assert model.bridge == bridge
        got = model.infer(feed)
        assert list(got) == [o.name for o in model.outputs]
        for out, w in zip(got.values(), want, strict=True):
            assert out.dtype == w.numpy().dtype and out.shape == tuple(w.shape), bridge
            np.testing.assert_allclose(out, w.numpy(), rtol=1e-4, atol=1e-5, err_msg=bridge)


def test_mlp(tmp_path):
    torch.manual_seed(0)
    net, x = MLP(), torch.randn(5, 16)
    done = torchbridge.export(net, (x,), tmp_path, name="mlp", max_batch_size=8)
    assert done.version == 1 and set(done.max_abs_diff) == set(BRIDGES)
    assert all(diff < 1e-4 for diff in done.max_abs_diff.values())
    config = (tmp_path / "mlp" / "config.toml").read_text()
    assert 'backend = "python"' in config and "max_batch_size = 8" in config
    assert {p.name for p in (tmp_path / "mlp" / "1").iterdir()} >= {
        "model.py", "state_dict.pt", "model.pt", "model.onnx"}
    model = torchbridge.Model.load(tmp_path / "mlp")
    assert model.inputs == [("INPUT0", "FP32", (-1, 16))]
    assert model.outputs == [("OUTPUT0", "FP32", (-1, 4))]
    check_every_bridge(tmp_path / "mlp", net, (x,), ["INPUT0"])


def test_small_cnn(tmp_path):
    torch.manual_seed(1)
    net, x = SmallCNN(), torch.randn(3, 1, 8, 8)
    torchbridge.export(net, x, tmp_path, name="cnn", bridges=("onnx", "torchscript", "python"))
    assert 'backend = "onnx"' in (tmp_path / "cnn" / "config.toml").read_text()
    assert torchbridge.Model.load(tmp_path / "cnn").inputs[0].shape == (-1, 1, 8, 8)
    check_every_bridge(tmp_path / "cnn", net, (x,), ["INPUT0"])


def test_two_inputs_two_outputs_with_names(tmp_path):
    torch.manual_seed(2)
    net, example = TwoInTwoOut(), (torch.randn(4, 3), torch.randn(4, 5))
    torchbridge.export(net, example, tmp_path, name="two", input_names=["X", "Y"],
                       output_names=["SUM", "TANH"], max_batch_size=16)
    model = torchbridge.Model.load(tmp_path / "two")
    assert [i.name for i in model.inputs] == ["X", "Y"]
    assert model.outputs == [("SUM", "FP32", (-1, 2)), ("TANH", "FP32", (-1, 5))]
    check_every_bridge(tmp_path / "two", net, example, ["X", "Y"])


def test_int64_token_ids(tmp_path):
    torch.manual_seed(3)
    net, ids = TokenModel(), torch.randint(0, 50, (6, 7), dtype=torch.int64)
    torchbridge.export(net, ids, tmp_path, name="tokens")
    assert torchbridge.Model.load(tmp_path / "tokens").inputs == [("INPUT0", "INT64", (-1, 7))]
    check_every_bridge(tmp_path / "tokens", net, (ids,), ["INPUT0"])


class PerToken(nn.Module):
    """A pooled output of fixed size and a per-token output that follows the length."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, ids):
        h = self.embed(ids)
        return self.out(h.mean(dim=1)), h.sum(dim=-1)


def test_dynamic_dims_serve_other_sequence_lengths_in_every_form(tmp_path):
    torch.manual_seed(6)
    net = PerToken()
    done = torchbridge.export(net, torch.randint(0, 50, (2, 7)), tmp_path, name="tok",
                              bridges=BRIDGES, dynamic_dims={"INPUT0": [1]})
    assert done.inputs == [("INPUT0", "INT64", [-1])]
    assert done.outputs == [("OUTPUT0", "FP32", [3]), ("OUTPUT1", "FP32", [-1])]
    ids = torch.randint(0, 50, (3, 11))  # a length the example did not have
    check_every_bridge(tmp_path / "tok", net, (ids,), ["INPUT0"])


class Strided(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, kernel_size=3, stride=2)

    def forward(self, x):
        return self.conv(x)


def test_a_strided_output_that_grows_every_other_step_is_dynamic(tmp_path):
    # Stride 2: lengths 9 and 10 both give 4 outputs; stride 3: 9, 10 and 11 give 3.
    for stride in (2, 3):
        net = Strided()
        net.conv.stride = (stride,)
        done = torchbridge.export(net, torch.randn(2, 4, 9), tmp_path, name=f"s{stride}",
                                  bridges=("onnx",), dynamic_dims={"INPUT0": [2]})
        assert done.outputs == [("OUTPUT0", "FP32", [4, -1])]


class Patches(nn.Module):
    """A ViT's patchify: 16x16 patches, so a 32-pixel example's grid grows only at 48."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=16, stride=16)

    def forward(self, x):
        return self.conv(x)


def test_an_output_that_grows_only_every_sixteen_steps_is_dynamic(tmp_path):
    done = torchbridge.export(Patches(), torch.randn(2, 3, 32, 32), tmp_path, name="vit",
                              bridges=("onnx",), dynamic_dims={"INPUT0": [2, 3]})
    assert done.outputs == [("OUTPUT0", "FP32", [8, -1, -1])]


class Branchy(nn.Module):
    """An `if` on the data: a trace keeps the example's branch only."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x, *extra):  # *extra: torch.jit.script refuses it, so export traces
        y = self.linear(x)
        if bool(y.mean() > 0):
            return y
        return -2 * y


@pytest.mark.parametrize("bridge", ["torchscript", "onnx"])
def test_a_traced_form_that_would_fix_a_branch_on_the_data_is_refused(tmp_path, bridge):
    torch.manual_seed(0)
    with pytest.raises(torchbridge.ExportError, match="met a branch on a tensor's value"):
        torchbridge.export(Branchy(), torch.randn(3, 4), tmp_path, name="b",
                           bridges=(bridge,), max_batch_size=0)
    assert not (tmp_path / "b" / "1").exists()


@pytest.mark.parametrize("dynamic, why", [
    ({"IDS": [1]}, "dynamic_dims names 'IDS', but the inputs are"),
    ({"INPUT0": [0]}, "axis 0 is not one of 1..1 \\(axis 0 is the batch\\)"),
    ({"INPUT0": [2]}, "axis 2 is not one of 1..1"),
])
def test_dynamic_dims_that_do_not_fit_are_refused(tmp_path, dynamic, why):
    with pytest.raises(torchbridge.ExportError, match=why):
        torchbridge.export(PerToken(), torch.randint(0, 50, (2, 7)), tmp_path, name="tok",
                           bridges="onnx", dynamic_dims=dynamic)


class SqueezesTheBatch(nn.Module):
    def forward(self, x):
        return (x * 2).squeeze(0)  # right only for one row


def test_an_example_of_one_row_does_not_hide_code_that_fixes_the_batch(tmp_path):
    with pytest.raises(torchbridge.ExportError, match=r"output OUTPUT0 has shape \[4\] for 1 row"):
        torchbridge.export(SqueezesTheBatch(), torch.randn(1, 4), tmp_path, name="sq",
                           bridges=("onnx",))
    done = torchbridge.export(MLP(), torch.randn(1, 16), tmp_path, name="one",
                              bridges=BRIDGES)
    assert done.outputs == [("OUTPUT0", "FP32", [4])]


class TimeMajorGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 4)  # [time, batch, features]: dim 0 is time

    def forward(self, x):
        return self.gru(x)[0]


def test_a_model_whose_dim_0_is_not_a_batch_of_independent_rows_is_refused(tmp_path):
    with pytest.raises(torchbridge.ExportError, match=r"last row of the 5-row example differs"):
        torchbridge.export(TimeMajorGRU(), torch.randn(5, 2, 8), tmp_path, name="tm",
                           bridges=("onnx",))
    assert not (tmp_path / "tm").exists()
    # Served without a batch dimension, it exports.
    torchbridge.export(TimeMajorGRU(), torch.randn(5, 2, 8), tmp_path, name="tm",
                       bridges=("onnx",), max_batch_size=0)


def test_a_second_export_adds_a_version_and_the_newest_is_served(tmp_path):
    torch.manual_seed(4)
    first, second, x = MLP(), MLP(), torch.randn(2, 16)
    assert torchbridge.export(first, x, tmp_path, name="m", bridges=("onnx",)).version == 1
    done = torchbridge.export(second, x, tmp_path, name="m", bridges=("torchscript",))
    assert done.version == 2
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2", "config.toml"]
    model = torchbridge.Model.load(tmp_path / "m")
    assert (model.version, model.bridge) == (2, "torchscript")
    with torch.no_grad():
        np.testing.assert_allclose(model.infer({"INPUT0": x.numpy()})["OUTPUT0"],
                                   second(x).numpy(), rtol=1e-5, atol=1e-6)


def test_a_re_export_keeps_the_operators_settings_and_the_labels(tmp_path):
    torch.manual_seed(4)
    x = torch.randn(2, 16)
    torchbridge.export(MLP(), x, tmp_path, name="m", bridges="onnx",
                       labels={"OUTPUT0": ["a", "b", "c", "d"]})
    config = tmp_path / "m" / "config.toml"
    config.write_text("threads = 2\nversion_policy = { latest = 2 }\n"
                      + config.read_text().replace("instances = 1", "instances = 3")
                      + "\n[batching]\nmax_queue_delay_us = 250\n")
    torchbridge.export(MLP(), x, tmp_path, name="m", bridges="onnx")
    text = config.read_text()
    for kept in ["threads = 2", "version_policy = { latest = 2 }", "[batching]", "instances = 3",
                 "max_queue_delay_us = 250", 'labels = "OUTPUT0.labels.txt"']:
        assert kept in text, f"{kept!r} lost:\n{text}"
    assert torchbridge.Model.load(tmp_path / "m").version == 2  # and it still loads
    # An output whose classes changed does not keep the old names.
    torchbridge.export(MLP(n_out=3), x, tmp_path, name="m", bridges="onnx")
    assert "labels" not in config.read_text()
    # A kept setting that a smaller max_batch_size would break refuses the export, and
    # nothing is written: the model still loads as it was.
    config.write_text(config.read_text().replace("[batching]",
                                                 "[batching]\npreferred_batch_sizes = [32]"))
    with pytest.raises(torchbridge.ExportError,
                       match=r"`batching.preferred_batch_sizes = \[32\]`, which does not fit "
                             r"max_batch_size=4"):
        torchbridge.export(MLP(n_out=3), x, tmp_path, name="m", bridges="onnx",
                           max_batch_size=4)
    assert sorted(p.name for p in (tmp_path / "m").iterdir() if p.name.isdigit()) == \
        ["1", "2", "3"]
    assert torchbridge.Model.load(tmp_path / "m").version == 3


def test_trust_pickle_writes_the_module_pickled(tmp_path):
    torch.manual_seed(5)
    net, x = nn.Sequential(nn.Linear(2, 2)), torch.randn(3, 2)
    torchbridge.export(net, x, tmp_path, name="p", bridges=("python", "onnx"),
                       trust_pickle=True)
    assert "trust_pickle = true" in (tmp_path / "p" / "config.toml").read_text()
    assert not (tmp_path / "p" / "1" / "model.py").exists()
    check_every_bridge_ = torchbridge.Model.load(tmp_path / "p", bridge="python")
    with torch.no_grad():
        np.testing.assert_allclose(check_every_bridge_.infer({"INPUT0": x.numpy()})["OUTPUT0"],
                                   net(x).numpy(), rtol=1e-5, atol=1e-6)


def test_trust_pickle_refuses_a_scripts_own_classes_the_server_could_not_import(tmp_path):
    script = textwrap.dedent('''
        import sys, torch, torchbridge
        class Block(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(2, 2)
            def forward(self, x):
                return self.fc(x)
        net = torch.nn.Sequential(Block(), torch.nn.ReLU())
        try:
            torchbridge.export(net, torch.randn(2, 2), sys.argv[1], name="p",
                               bridges=("python",), trust_pickle=True)
        except torchbridge.ExportError as e:
            print(e)
    ''')
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert "refers to Block in `__main__`" in run.stdout, run.stdout + run.stderr
    assert "trust_pickle=True" not in run.stdout, run.stdout  # not advised to the one using it
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").glob("[0-9]*"))


class Unexportable(nn.Module):
    def forward(self, x):
        return torch.fft.fft(x).abs()


def test_an_unexportable_operator_is_refused_by_name_and_leaves_no_version(tmp_path):
    with pytest.raises(torchbridge.ExportError, match="onnx form failed.*fft") as err:
        torchbridge.export(Unexportable(), torch.randn(2, 8), tmp_path, name="bad",
                           bridges=("onnx",))
    assert isinstance(err.value, torchbridge.TorchbridgeError)
    assert not (tmp_path / "bad").exists(), "the model directory it made is removed too"


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = MLP()

    def forward(self, x):
        logits = self.head(x)
        return {"logits": logits, "probs": logits.softmax(-1)}


class WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.head = MLP()

    def forward(self, x):
        return self.head(self.drop(self.norm(x)))


def test_the_callers_module_keeps_its_training_modes(tmp_path):
    net = WithDropout().train()
    net.norm.eval()  # frozen statistics, as fine-tuning does
    torchbridge.export(net, torch.randn(4, 16), tmp_path, name="net", bridges="onnx")
    assert net.training and net.drop.training and net.head.training
    assert not net.norm.training
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == ["1", "config.toml"]


def test_half_precision_modules_export_in_every_form(tmp_path):
    torch.manual_seed(5)
    net, x = MLP().half(), torch.randn(3, 16).half()
    done = torchbridge.export(net, x, tmp_path, name="half", bridges=BRIDGES)
    assert done.inputs[0][1] == "FP16" and set(done.max_abs_diff) == set(BRIDGES)
    with torch.no_grad():
        want = net(x).float().numpy()
    got = torchbridge.Model.load(tmp_path / "half", bridge="python").infer({"INPUT0": x.numpy()})
    assert got["OUTPUT0"].dtype == np.float16
    np.testing.assert_allclose(got["OUTPUT0"].astype(np.float32), want, rtol=1e-2, atol=1e-2)


class FixesTheBatch(nn.Module):
    def forward(self, x):
        return x.reshape(4, 12)


class NestedOut(nn.Module):
    def forward(self, x):
        return x, (x, x)


@pytest.mark.parametrize("kwargs,why", [
    ({"module": FixesTheBatch(), "example_inputs": torch.randn(4, 12)},
     "the module fails on one row of the example \\(RuntimeError: shape"),
    ({"module": NestedOut()}, "must be a tensor, or a tuple, list or dict of tensors"),
    ({"name": "../escape"}, "name must be a non-empty model name"),
    ({"name": ""}, "name must be a non-empty model name"),
    ({"name": "a/b"}, "name must be a non-empty model name"),
    ({"module": nn.Sequential(nn.Linear(16, 4))}, "Sequential is torch's own"),
    ({"labels": {"OUTPUT0": ["a", "b"]}}, "2 class name\\(s\\), but the output has 4 classes"),
    ({"example_inputs": {"x": torch.randn(2, 16)}}, "example_inputs must be a tensor"),
    ({"module": DictOut(), "output_names": ["probs", "logits"]},
     "must be the keys of the dict the module returns, in its order: \\['logits', 'probs'\\]"),
    ({"max_batch_size": -5}, "max_batch_size must be a whole number >= 0"),
    ({"module": TwoInTwoOut(), "example_inputs": (torch.randn(2, 3), torch.randn(2, 5)),
      "input_names": ["x", "x"]}, "\\['x'\\] given more than once"),
    ({"output_names": ["INPUT0"]}, "\\['INPUT0'\\] given more than once"),
])
def test_what_cannot_be_exported_is_refused_before_anything_is_written(tmp_path, kwargs, why):
    args = {"module": MLP(), "example_inputs": torch.randn(2, 16), "name": "m",
            "bridges": BRIDGES, **kwargs}
    with pytest.raises(torchbridge.ExportError, match=why):
        torchbridge.export(args.pop("module"), args.pop("example_inputs"), tmp_path / "repo",
                           **args)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
    assert not (tmp_path / "escape").exists()


def test_labels_name_the_classes_of_an_output(tmp_path):
    torch.manual_seed(4)
    net, x = MLP(), torch.randn(2, 16)
    names = ["cat", "dog", "bird", "fish"]
    torchbridge.export(net, x, tmp_path, name="pets", bridges=("onnx",),
                       labels={"OUTPUT0": names})
    config = (tmp_path / "pets" / "config.toml").read_text()
    assert 'labels = "OUTPUT0.labels.txt"' in config
    assert (tmp_path / "pets" / "OUTPUT0.labels.txt").read_text().splitlines() == names
    # The Rust loader reads the labels file: a missing one fails the load, naming it.
    assert torchbridge.Model.load(tmp_path / "pets").outputs[0].name == "OUTPUT0"
    (tmp_path / "pets" / "OUTPUT0.labels.txt").unlink()
    with pytest.raises(torchbridge.TorchbridgeError, match="OUTPUT0.labels.txt"):
        torchbridge.Model.load(tmp_path / "pets")


@pytest.mark.parametrize("labels,why", [
    ({"LOGITS": ["a"]}, "labels name output 'LOGITS'"),
    ({"OUTPUT0": "abcd"}, "a list of class-name strings"),
    ({"OUTPUT0": 4}, "a list of class-name strings"),
    ({"OUTPUT0": ["a\nb"]}, "cannot hold a line break"),
])
def test_labels_that_cannot_be_written_are_refused(tmp_path, labels, why):
    with pytest.raises(torchbridge.ExportError, match=why):
        torchbridge.export(MLP(), torch.randn(2, 16), tmp_path, name="bad", bridges=("onnx",),
                           labels=labels)
    assert not (tmp_path / "bad").exists()


class UsesImports(nn.Module):
    """Uses names this file imports: modules (F, math, np) and a function (gelu)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        y = F.relu(self.lin(x)) / math.sqrt(4)
        return gelu(y) + float(np.float32(0.5))


def test_the_python_form_carries_the_modules_the_class_uses(tmp_path):
    torch.manual_seed(7)
    net, x = UsesImports(), torch.randn(3, 4)
    torchbridge.export(net, x, tmp_path, name="imports", bridges=BRIDGES)
    model_py = (tmp_path / "imports" / "1" / "model.py").read_text()
    for line in ("import torch.nn.functional as F", "import math", "import numpy as np"):
        assert f"\n{line}\n" in model_py, model_py
    assert re.search(r"\nfrom torch[\w.]* import gelu\n", model_py), model_py  # its home
    check_every_bridge(tmp_path / "imports", net, (x,), ["INPUT0"])


def _double(x):
    return 2 * x


class UsesAHelper(nn.Module):
    def forward(self, x):
        return _double(x)


class Scaled(nn.Module):
    def __init__(self, d, scale):
        super().__init__()
        self.lin = nn.Linear(d, 2)
        self.scale = scale  # not in the state dict: model.py rebuilds it from init_kwargs

    def forward(self, x):
        return self.lin(x) * self.scale


class Opaque:
    def __rmul__(self, other):
        return other


def test_names_and_init_kwargs_model_py_cannot_carry_are_refused_by_name(tmp_path):
    with pytest.raises(torchbridge.ExportError,
                       match=r"UsesAHelper uses `_double` \(a function that test_export "
                             r"defines or imports"):
        torchbridge.export(UsesAHelper(), torch.randn(2, 4), tmp_path, name="h",
                           bridges=BRIDGES)
    with pytest.raises(torchbridge.ExportError, match=r"init_kwargs\['scale'\]"):
        torchbridge.export(Scaled(4, Opaque()), torch.randn(2, 4), tmp_path, name="o",
                           bridges=BRIDGES, init_kwargs={"d": 4, "scale": Opaque()})
    assert not any(tmp_path.iterdir())
    # A tensor is rebuilt in model.py with its values and dtype.
    torch.manual_seed(8)
    scale = torch.tensor([3.0, 0.5], dtype=torch.float64)
    net, x = Scaled(4, scale), torch.randn(2, 4, dtype=torch.float64)
    net.double()
    torchbridge.export(net, x, tmp_path, name="t", bridges=BRIDGES,
                       init_kwargs={"d": 4, "scale": scale})
    check_every_bridge(tmp_path / "t", net, (x,), ["INPUT0"])


CONCURRENT_EXPORT = """
import json, os, sys, time
import torch, torchbridge
from nets import Good, Bad

seed, repo, who = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.manual_seed(seed)
net = Bad() if who == "bad" else Good()
open(f"ready.{who}", "w").close()  # start together: every export claims a version at once
deadline = time.time() + 60
while not all(os.path.exists(f"ready.{w}") for w in ("a", "b", "bad")) and time.time() < deadline:
    time.sleep(0.001)
try:
    done = torchbridge.export(net, torch.randn(3, 4), repo, name="net", bridges=BRIDGES)
    print(json.dumps({"version": done.version}))
except torchbridge.ExportError as err:
    print(json.dumps({"error": str(err)}))
"""

CONCURRENT_NETS = """
import torch
from torch import nn


class Good(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x)


class Bad(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return torch.fft.fft(self.lin(x)).abs()  # no onnx form: fails after the others start
"""


def test_concurrent_exports_of_one_name_each_write_a_whole_version_of_their_own(tmp_path):
    (tmp_path / "nets.py").write_text(CONCURRENT_NETS)
    (tmp_path / "export_one.py").write_text(f"BRIDGES = {BRIDGES!r}\n" + CONCURRENT_EXPORT)
    seeds = {"a": 1, "b": 2, "bad": 3}
    runs = {who: subprocess.Popen([sys.executable, "export_one.py", str(seed), "repo", who],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
            for who, seed in seeds.items()}
    results = {}
    for who, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        results[who] = json.loads(out.strip().splitlines()[-1])
    assert "onnx form failed" in results["bad"].get("error", ""), results
    versions = {who: results[who].get("version") for who in ("a", "b")}
    assert None not in versions.values() and versions["a"] != versions["b"], results
    model_dir = tmp_path / "repo" / "net"
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        [str(v) for v in versions.values()] + ["config.toml"]), "a version or staging dir"
    sys.path.insert(0, str(tmp_path))
    try:
        from nets import Good
    finally:
        sys.path.remove(str(tmp_path))
    x = torch.randn(5, 4)
    for who, version in versions.items():
        torch.manual_seed(seeds[who])
        net = Good()
        # Each version on its own, every form in it: all the forms of the one process.
        alone = tmp_path / f"alone_{who}" / "net"
        shutil.copytree(model_dir / str(version), alone / "1")
        shutil.copy(model_dir / "config.toml", alone / "config.toml")
        check_every_bridge(alone, net, (x,), ["INPUT0"])


def test_a_killed_exports_staging_directory_is_reclaimed(tmp_path):
    # An export killed mid-write leaves `.N.partial` (gigabytes, maybe): the next export
    # of this host removes it once its owner is gone, and takes its number.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket
    stale = tmp_path / "net" / ".1.partial"
    stale.mkdir(parents=True)
    (stale / ".owner").write_text(f"{socket.gethostname()} {dead.stdout.strip()}")
    (stale / "model.onnx").write_bytes(b"half written")
    alive = tmp_path / "net" / ".2.partial"  # this process's: still being written
    alive.mkdir()
    (alive / ".owner").write_text(f"{socket.gethostname()} {os.getpid()}")
    exported = torchbridge.export(nn.Sequential(nn.Linear(4, 2)), torch.randn(2, 4), tmp_path,
                                  name="net", bridges=("onnx",))
    assert exported.version == 1 and not stale.exists() and alive.exists()
    assert not (tmp_path / "net" / "1" / ".owner").exists()
