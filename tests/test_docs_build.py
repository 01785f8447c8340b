"""The docs site builds with ``mkdocs build --strict`` (every link resolves, math extension loads).

mkdocs is in the test extra, so CI runs this; without mkdocs installed it is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("pymdownx")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "site" / "ops" / "linear-and-matmul" / "index.html").read_text(encoding="utf-8")
    assert "../../_source/minilora/ops/linear.py" in page  # a link to the code, brought into the site
    assert (tmp_path / "site" / "_source" / "minilora" / "ops" / "linear.py").is_file()
