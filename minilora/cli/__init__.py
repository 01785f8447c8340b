"""The ``minilora`` command line. Each subcommand lives in its own module with ``add_parser`` and ``run``.

User mistakes (a missing file, a bad option, a checkpoint that does not fit)
print one line ``minilora: error: ...`` and exit 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CLIError as exc:
        print(f"minilora: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"minilora: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("minilora: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
