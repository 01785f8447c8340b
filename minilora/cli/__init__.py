"""The ``minilora`` command line. Each subcommand lives in its own module with ``add_parser`` and ``run``.

User mistakes (a missing file, a bad option, a checkpoint that does not fit)
print one line ``minilora: error: ...`` and exit 2, with no traceback.

Under ``mpiexec -n N`` every command runs as N ranks (minilora.distributed): rank 0 alone
prints to stdout, and a rank that fails aborts the others instead of leaving them waiting.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

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


def finite_float(text: str) -> float:
    """``type=float`` of every option: "nan" and "inf" are refused (``nan < 0`` is False: range checks miss them)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def one_line(message: str, limit: int = 600) -> str:
    """A multi-line library message on one line, cut (at a word, with a mark) when longer than ``limit``."""
    text = " ".join(p.strip() for p in str(message).splitlines() if p.strip())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(",;") + f" ... ({len(text) - limit:,}+ more characters)"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), exit status 2, like every other user error.

    Every ``type=float`` option (in every subcommand and group) is parsed by ``finite_float``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("type", float, finite_float)

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


def _error(message: str) -> int:
    print(f"minilora: error: {one_line(message)}", file=sys.stderr)
    return 2


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so a save in progress removes its temporary files (see minilora.io)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure is one line on stderr: exit 2 (1 for an unexpected internal error), 130
    when interrupted (Ctrl-C or SIGTERM). ``MINILORA_DEBUG=1`` shows the traceback of an unexpected error."""

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings.catch_warnings():  # NumPy's overflow/NaN warnings: the non-finite guard says it in one line
            warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
            return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from minilora import distributed  # noqa: PLC0415
    from minilora.optim import NonFiniteError  # noqa: PLC0415

    try:
        if distributed.launcher_variable() and distributed.init().rank != 0:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (rank 0 alone prints; stderr stays)
        return int(args.run(args) or 0)
    except distributed.DistributedError as exc:
        distributed.report(exc)
        return 2 if exc.collective else _abort_others(2)
    except CLIError as exc:
        return _abort_others(_error(str(exc)))
    except NonFiniteError as exc:
        return _abort_others(_error(f"training stopped, no checkpoint written for it: {exc}"))
    except BrokenPipeError:  # e.g. `minilora generate ... | head`: the reader left; say so once, quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return _error("output closed early (broken pipe)")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        return _abort_others(_error(f"{exc.strerror or exc}: {exc.filename}"))
    except UnicodeDecodeError as exc:
        return _abort_others(_error(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})"))
    except KeyboardInterrupt:
        print("minilora: interrupted", file=sys.stderr)
        return _abort_others(130)
    except Exception as exc:
        if os.environ.get("MINILORA_DEBUG"):
            raise
        _error(f"{type(exc).__name__}: {exc} (unexpected: please report it; MINILORA_DEBUG=1 shows the traceback)")
        return _abort_others(1)


def _abort_others(code: int) -> int:
    """Several ranks: one failed alone, and the others would wait for it forever in their next collective."""
    from minilora import distributed  # noqa: PLC0415

    if distributed.launcher_variable() and distributed.world_size() > 1:
        distributed.abort(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
