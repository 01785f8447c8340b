"""README.md's and docs/demo.md's measured blocks are exactly what benchmarks/readme_figures.json renders."""

from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("readme_figures", os.path.join(ROOT, "benchmarks", "readme_figures.py"))
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)


@pytest.mark.parametrize("page", list(figures.PAGES))
def test_page_matches_the_record(page):
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    assert figures.render(text, figures.load_record(), figures.PAGES[page]) == text, (
        f"{page} differs from benchmarks/readme_figures.json: run python benchmarks/readme_figures.py render")


def test_every_figure_is_dated():
    record = figures.load_record()
    block = figures.measured_block(record) + figures.demo_block(record["demo"])
    assert block.count("(measured ") >= 2 + len(record["elsewhere"]) and "measured " in block
