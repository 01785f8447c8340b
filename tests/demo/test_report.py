"""The table formats, and the demo without matplotlib (it says how to get the picture)."""

from __future__ import annotations

import sys

from minilora.demo import DemoConfig, run_demo
from minilora.demo.report import MethodResult, human_bytes, markdown_table


def test_human_bytes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2**20) == "3.0 MiB"


def test_markdown_table_has_one_row_per_method():
    r = MethodResult("lora", 10, 1000, 2048, 4096, 8192, 1.5, 2.0, 1.0, 0.0, 0.5, 1e-2)
    md = markdown_table([r])
    want = "| lora | 10 | 1.00% | 2.0 KiB | 4.0 KiB | 8.0 KiB | 1.5 | 2.0000 | 1.0000 | 0.0% -> 50.0% |"
    assert md.splitlines()[2] == want


def test_without_matplotlib_the_demo_says_how_to_get_the_picture(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    lines: list[str] = []
    cfg = DemoConfig.quick(out_dir=str(tmp_path / "out"), cache_dir=None, methods=("lora",))
    res = run_demo(cfg, log=lines.append)
    assert "loss_curves.png" not in res.files and not (tmp_path / "out" / "loss_curves.png").exists()
    assert any("pip install 'minilora[plot]'" in line for line in lines)
    assert (tmp_path / "out" / "results.md").exists()
