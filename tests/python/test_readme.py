"""The README's "From Python" walkthrough runs as written: saved as a script and run by
this interpreter in an empty directory, as a user would."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_the_from_python_walkthrough_runs(tmp_path):
    blocks = python_blocks("From Python")
    assert len(blocks) == 1
    script = tmp_path / "walkthrough.py"
    script.write_text(blocks[0])
    run = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "input `INPUT0` must have shape [-1, 4], got [2, 5]" in run.stdout
    assert "served [2, 3] True" in run.stdout
    assert {p.name for p in (tmp_path / "models" / "net" / "1").iterdir()} >= {
        "model.py", "model.pt", "model.onnx"}
    labels = tmp_path / "models" / "net" / "OUTPUT0.labels.txt"
    assert labels.read_text().split() == ["setosa", "versicolor", "virginica"]
