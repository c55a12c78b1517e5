"""The README's "Use from Python" blocks run, in order, as a user would paste them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import named_tree

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    text = README.read_text()
    section = text.split("<!-- python-api:start -->", 1)[1].split("<!-- python-api:end -->", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_python_section_runs(db_url, tmp_path, monkeypatch, capsys):
    named_tree(tmp_path / "photos", ["astronaut", "cat", "rocket"], 16)
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "['astronaut', 'cat', 'rocket']"
    assert out[1].startswith("succeeded ") and float(out[1].split()[1]) >= 0.9
    status, val, test = out[2].split()
    assert status == "succeeded" and float(test) > 0.5
