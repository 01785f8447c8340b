"""Shared by the CLI tests: every user mistake comes out as one ``minilora ...`` line on stderr, exit code 2."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from minilora.cli import main


@pytest.fixture
def cli_error(capsys) -> Callable[[list[str]], str]:
    """``cli_error(argv)`` runs the CLI, asserts the one-line error (no traceback) and returns that line."""

    def check(argv: list[str]) -> str:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
        captured = capsys.readouterr()
        assert code == 2
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("minilora"), captured.err
        assert "Traceback" not in captured.err + captured.out
        return lines[0]

    return check
