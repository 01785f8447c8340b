"""The README's measured figures, written from one record so they cannot drift from what was measured.

    python benchmarks/readme_figures.py demo runs/demo   # after: minilora demo --seeds 3 --out runs/demo
                                                         # (several folders: method subsets, joined)
    python benchmarks/readme_figures.py pretrain         # times the default `minilora pretrain` (a temp folder)
    python benchmarks/readme_figures.py render           # rewrite README's blocks from the record only

Each command that measures stores its figures, with the date, in benchmarks/readme_figures.json;
every command then rewrites the generated blocks from that record: README.md's demo table (between
``<!-- BEGIN demo-results -->`` and ``<!-- END demo-results -->``) and measured figures (``<!-- BEGIN
measured -->`` / ``<!-- END measured -->``), and the same demo table in docs/demo.md.
tests/benchmarks/test_readme_figures.py checks that both pages are exactly what the record renders.
Figures measured elsewhere (benchmarks/run.py's speed table, the low-rank analysis) are kept in the
record as text with the date they were measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = os.path.join(ROOT, "benchmarks", "readme_figures.json")


def today() -> str:
    return datetime.date.today().isoformat()


def load_record(path: str = RECORD) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _minsec(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def demo_block(d: dict[str, Any], img: str = "docs/img/") -> str:
    """The demo's table (mean ± sd over the seeds) and picture, from ``minilora demo --seeds N``'s summary."""
    n = len(d["seeds"])
    lines = [
        f"`minilora demo --seeds {n}` (measured {d['date']} on this repository's 2-core machine, "
        f"{d['load']}): every method fine-tunes the same pre-trained base {n} times (fine-tuning seeds "
        f"{', '.join(map(str, d['seeds']))}); a seed's runs took {_minsec(min(d['seconds']))} to "
        f"{_minsec(max(d['seconds']))} of wall clock. {d['header']}",
        "",
        "| method | lr | trainable params | adapter on disk | val loss after | exact-match accuracy "
        f"(mean ± sd, {n} seeds) | min .. max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in d["methods"]:
        acc, loss = r["accuracy_after"], r["val_loss_after"]
        lines.append(
            f"| {r['method']} | {r['lr']:g} | {r['trainable_params']:,} ({r['trainable_pct']:.2f}%) | {r['adapter']} | "
            f"{loss['mean']:.4f} ± {loss['std']:.4f} | "
            f"**{acc['mean']:.1f}%** ± {acc['std']:.1f} | {acc['min']:.1f} .. {acc['max']:.1f}% |"
        )
    lines += ["", "![mean training loss, validation loss and accuracy of every method over the seeds]"
                  f"({img}demo_loss_curves.png)", "", d["note"].replace("{docs}", img.removesuffix("img/"))]
    return "\n".join(lines)


def measured_block(record: dict[str, Any]) -> str:
    p, d = record["pretrain"], record["demo"]
    bullets = [
        f"- **Pre-training** ([docs/training.md](docs/training.md#measured-the-default-minilora-pretrain)): the "
        f"default `minilora pretrain` ({p['params']}, {p['steps']} steps) reaches validation loss "
        f"**{p['val_loss']:.4f}** (uniform guessing: 4.56) in **{_minsec(p['seconds'])}** wall clock "
        f"(measured {p['date']}, {p['load']}); the demo's 4-layer base (813,824 parameters, 500 steps) reaches "
        f"**{d['pretrain_val_loss']:.4f}** in {_minsec(d['pretrain_seconds'])} ({d['pretrain_when']}).",
    ]
    bullets += [f"- {e['text']} (measured {e['date']})" for e in record["elsewhere"]]
    return "\n".join(bullets)


PAGES = {"README.md": "docs/img/", "docs/demo.md": "img/"}  # page -> where the demo's picture is, from it


def render(readme: str, record: dict[str, Any], img: str = "docs/img/") -> str:
    """``readme`` (README.md, or docs/demo.md with ``img="img/"``) with its generated blocks replaced by what
    ``record`` renders (docs/demo.md has only the demo block)."""
    blocks = [("demo-results", demo_block(record["demo"], img))]
    if "<!-- BEGIN measured -->" in readme:
        blocks.append(("measured", measured_block(record)))
    for name, body in blocks:
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(\n<!-- END {name} -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README.md has no <!-- BEGIN {name} --> ... <!-- END {name} --> block")
        readme = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), readme)
    return readme


def _load() -> str:
    try:
        return f"load average {os.getloadavg()[0]:.0f} when recorded"
    except OSError:  # pragma: no cover - no getloadavg
        return "load unknown"


def measure_demo(out_dirs: list[str]) -> dict[str, Any]:
    """The summaries of ``minilora demo --seeds N --out DIR`` (several DIRs: method subsets run with the same
    seeds and base, joined in order); writes their mean curves to docs/img/demo_loss_curves.png."""
    from minilora.demo.report import MethodResult, human_bytes, plot_curves  # noqa: PLC0415
    from minilora.demo.seeds import mean_curves  # noqa: PLC0415

    methods, per_seed, runs_seconds, header, seeds, first = [], None, [], None, None, None
    for out_dir in out_dirs:
        summary = json.load(open(os.path.join(out_dir, "results.json"), encoding="utf-8"))
        runs = [json.load(open(path, encoding="utf-8")) for path in summary["runs"]]
        if seeds is not None and summary["seeds"] != seeds:
            raise ValueError(f"{out_dir}: seeds {summary['seeds']} are not {seeds}")
        seeds, first = summary["seeds"], first or runs[0]
        header = header or open(os.path.join(out_dir, "results.md"), encoding="utf-8").read().split("\n\n")[0]
        sizes = {r["method"]: r["adapter_bytes"] for r in runs[0]["results"]}
        methods += [{**m, "adapter": human_bytes(sizes[m["method"]])} for m in summary["methods"]]
        results = [[MethodResult(**r) for r in run["results"]] for run in runs]
        per_seed = results if per_seed is None else [a + b for a, b in zip(per_seed, results)]
        seconds = [run["seconds"] for run in runs]
        runs_seconds = seconds if not runs_seconds else [a + b for a, b in zip(runs_seconds, seconds)]
    fake_runs = [type("Run", (), {"results": r})() for r in per_seed]
    plot_curves(os.path.join(ROOT, "docs", "img", "demo_loss_curves.png"), mean_curves(fake_runs),
                f"minilora demo: mean of {len(seeds)} fine-tuning seeds on 'sentiment' (200 steps per method)")
    return {"date": today(), "load": _load(), "seeds": seeds, "seconds": runs_seconds, "header": header,
            "methods": methods, "note": "", "pretrain_val_loss": first["pretrain_val_loss"],
            "pretrain_seconds": first["pretrain_seconds"]}


def measure_pretrain() -> dict[str, Any]:
    """Time the default ``minilora pretrain`` in a temporary folder; its parameters, steps and final val loss."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "minilora.cli", "pretrain", "--out-dir", d, "--no-progress"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
        seconds = time.perf_counter() - t0
    model = re.search(r"model: GPT n_layer=(\d+).*?, ([\d,]+) parameters", out)
    done = re.search(r"done: step (\d+), .*?val loss ([\d.]+)", out)
    return {"date": today(), "load": _load(), "seconds": seconds, "steps": int(done.group(1)),
            "val_loss": float(done.group(2)), "params": f"{model.group(1)} layers, {model.group(2)} parameters"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", default=None, help="how loaded the machine was while it ran (default: the load "
                   "average now)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo").add_argument("out_dirs", nargs="+", help="the --out folder(s) of `minilora demo --seeds N`")
    sub.add_parser("pretrain")
    sub.add_parser("render")
    args = p.parse_args(argv)
    record = load_record()
    if args.cmd == "demo":
        kept = {k: record["demo"][k] for k in ("note", "pretrain_when") if k in record["demo"]}
        record["demo"] = {**measure_demo(args.out_dirs), "pretrain_when": "measured when it was cached", **kept}
    elif args.cmd == "pretrain":
        record["pretrain"] = measure_pretrain()
    if args.load and args.cmd in ("demo", "pretrain"):
        record[args.cmd]["load"] = args.load
    with open(RECORD, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for page, img in PAGES.items():
        path = os.path.join(ROOT, page)
        with open(path, encoding="utf-8") as f:
            text = render(f.read(), record, img)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"wrote {os.path.relpath(RECORD, ROOT)}, {' and '.join(PAGES)}")


if __name__ == "__main__":
    main()
