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


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    """A 1-layer checkpoint pre-trained for 2 steps (block size 32): a base for the fine-tuning commands."""
    out = tmp_path_factory.mktemp("tiny_base")
    assert main(["pretrain", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "32",
                 "--batch-size", "4", "--max-steps", "2", "--eval-interval", "0", "--eval-batches", "1",
                 "--corpus-size", "100", "--no-progress", "--out-dir", str(out)]) == 0
    return str(out / "ckpt.npz")
