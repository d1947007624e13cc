"""Write one torchbridge model-repository entry from an nn.Module.

The code lives in the torchbridge package (python/torchbridge/_repo.py, behind
`torchbridge.export`); this file loads it straight from the source tree, so the fixture
and example scripts work without the extension module built:

    sys.path.insert(0, "tools"); import modelrepo
    modelrepo.write_model("models", "mlp", net, (torch.randn(3, 16),), ...)
"""

import importlib.util
import sys
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[1] / "python" / "torchbridge" / "_repo.py"
_spec = importlib.util.spec_from_file_location("torchbridge_repo_source", _SOURCE)
_repo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_repo)
# This module is that one: `modelrepo.write_model`, `modelrepo.TORCH_DTYPES`, ...
sys.modules[__name__] = _repo
