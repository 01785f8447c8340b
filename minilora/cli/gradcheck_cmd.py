"""``minilora gradcheck``: run every op's registered finite-difference case and print a table."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any

import minilora
from minilora import backend
from minilora.gradcheck import Report, run_case
from minilora.gradcheck_cases import CASES, Case


def import_all_modules() -> None:
    """Import every module of the minilora package, so every Function and its cases are registered.

    Modules that need an optional extra that is not installed (safetensors, tokenizers, ...) are skipped.
    """
    for info in pkgutil.walk_packages(minilora.__path__, "minilora."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # running it would start the command line
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "minilora":
                raise


def run_all(device: str = "cpu", names: Sequence[str] | None = None) -> list[tuple[Case, Report | Exception]]:
    """Run every registered case (or those whose name is in ``names``) of every minilora module."""
    import_all_modules()
    results: list[tuple[Case, Report | Exception]] = []
    for case in CASES:
        if names and case.name not in names:
            continue
        try:
            results.append((case, run_case(case, device)))
        except Exception as exc:  # reported in the table, not raised
            results.append((case, exc))
    return results


def add_parser(sub: Any, name: str) -> None:
    p = sub.add_parser(name, help="check every op's hand-written backward against finite differences (float64)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run the cases")
    p.add_argument("--op", action="append", default=None, help="only this case name (repeatable)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from minilora.cli import CLIError

    if args.device == "cuda" and not backend.cuda_available():
        raise CLIError(f"--device cuda: {backend.cuda_unavailable_reason()}")
    results = run_all(args.device, args.op)
    if not results:
        raise CLIError(f"no gradcheck case named {args.op}")
    rows = []
    for case, res in results:
        if isinstance(res, Exception):
            rows.append((case.name, case.shapes(), "-", "-", "FAIL"))
        else:
            rows.append((case.name, case.shapes(), f"{res.max_abs_err:.1e}", f"{res.max_rel_err:.1e}", "pass"))
    header = ("op", "shapes", "max abs err", "max rel err", "result")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    failed = [(c, e) for c, e in results if isinstance(e, Exception)]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed ({args.device}, float64 central differences)")
    for case, exc in failed:
        print(f"FAIL {case.name}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0
