"""benchmarks/run.py end to end on a tiny shape: every method gets a row, the page names the machine."""

from __future__ import annotations

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")


def test_run_writes_one_table_with_every_method(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(BENCH)  # run.py imports its sibling benchmark modules by name
    spec = importlib.util.spec_from_file_location("bench_run_under_test", os.path.join(BENCH, "run.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tiny = dict(n_layer=1, n_head=2, n_embd=16, block_size=24, batch=2)
    monkeypatch.setitem(bench.SHAPES, "baby", tiny)
    monkeypatch.setattr(bench, "raw_matmul_flops", lambda *args: 1e9)  # no 2048^3 GEMMs in a test
    out, js = tmp_path / "benchmarks.md", tmp_path / "b.json"
    results = bench.main(["--shapes", "baby", "--repeats", "1", "--out", str(out), "--json", str(js), "--no-torch"])
    page = out.read_text()
    rows = results["shapes"]["baby"]
    assert [r["method"] for r in rows] == list(bench.METHODS)
    for r in rows:
        assert r["ms_per_step"] > 0 and r["tokens_per_s"] > 0 and 0 < r["mfu"] and r["peak_bytes"] > 0
        assert f"| {r['method']} |" in page
    assert "| CPU |" in page and "| NumPy |" in page and "| BLAS |" in page and "MFU" in page
    assert json.loads(js.read_text())["shapes"]["baby"][0]["method"] == "full"
