"""benchmarks/vs_torch.py without torch: the skip line, the minilora and floor workers, the table."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, batch=2, T=8)


def _module(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    spec = importlib.util.spec_from_file_location("vs_torch_under_test", os.path.join(BENCH, "vs_torch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_skips_in_one_line_without_torch(monkeypatch, capsys, tmp_path):
    vs = _module(monkeypatch)
    assert vs.main(["--torch-python", str(tmp_path / "no-python")]) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("vs_torch: skipped: torch")


def test_workers_and_table(monkeypatch, tmp_path):
    vs = _module(monkeypatch)
    data = tmp_path / "tiny.npz"
    vs.write_data(TINY, str(data))
    arrays = dict(np.load(data))
    raw = {}
    for method in ("full", "lora"):
        ml = vs.worker_minilora(TINY, method, arrays, warmup=1, steps=2)
        assert ml["median_s"] > 0 and ml["peak_rss"] > 0 and np.isfinite(ml["first_loss"])
        assert ml["last_loss"] < ml["first_loss"]  # it trains
        floor = vs.worker_floor(TINY, method, reps=1)
        assert floor["median_s"] > 0 and floor["gflops"] > 0
        fake_torch = {**ml, "threads": 2}
        raw[f"tiny/{method}"] = {"minilora": [ml], "torch": [fake_torch], "floor": [floor]}
    rows = vs.summarise(raw)
    assert [r["ratio"] for r in rows] == [1.0, 1.0]
    page = vs.markdown({"rows": rows, "load": [(1.0,), (2.0,)], "rounds": 1, "torch": "x", "peft": "y", "numpy": "z"})
    assert "| tiny | full |" in page and "| tiny | lora |" in page and "floor" in page
    full, lora = (vs._gemms(TINY, m) for m in ("full", "lora"))
    assert len(full) > len(lora)  # LoRA skips the frozen weights' gradients
