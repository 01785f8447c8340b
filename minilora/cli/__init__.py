"""The ``minilora`` command line. Each subcommand lives in its own module with ``add_parser`` and ``run``.

User mistakes (a missing file, a bad option, a checkpoint that does not fit)
print one line ``minilora: error: ...`` and exit 2, with no traceback.

Under ``mpiexec -n N`` every command runs as N ranks (minilora.distributed): rank 0 alone
prints to stdout, and a rank that fails aborts the others instead of leaving them waiting.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# subcommand name -> module under minilora.cli
COMMANDS = {
    "gradcheck": "minilora.cli.gradcheck_cmd",
    "pretrain": "minilora.cli.train_cmd",
    "generate": "minilora.cli.generate_cmd",
    "eval": "minilora.cli.eval_cmd",
    "finetune": "minilora.cli.finetune_cmd",
    "demo": "minilora.cli.demo_cmd",
    "params": "minilora.cli.params_cmd",
    "analyze": "minilora.cli.analyze_cmd",
}


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), exit status 2, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="minilora",
        description="minilora: autograd, Transformers and parameter-efficient fine-tuning in NumPy/CuPy.",
    )
    from minilora import __version__  # noqa: PLC0415

    parser.add_argument("--version", action="version", version=f"minilora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from minilora import distributed  # noqa: PLC0415

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if distributed.launcher_variable() and distributed.init().rank != 0:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (rank 0 alone prints; stderr stays)
        return int(args.run(args) or 0)
    except distributed.DistributedError as exc:
        distributed.report(exc)
        return 2 if exc.collective else _abort_others(2)
    except CLIError as exc:
        print(f"minilora: error: {exc}", file=sys.stderr)
        return _abort_others(2)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"minilora: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return _abort_others(2)
    except KeyboardInterrupt:
        print("minilora: interrupted", file=sys.stderr)
        return _abort_others(130)


def _abort_others(code: int) -> int:
    """Several ranks: one failed alone, and the others would wait for it forever in their next collective."""
    from minilora import distributed  # noqa: PLC0415

    if distributed.launcher_variable() and distributed.world_size() > 1:
        distributed.abort(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
