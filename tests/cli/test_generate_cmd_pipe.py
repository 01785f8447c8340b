"""``minilora generate ... | head``: the reader leaving early is one line on stderr (exit 2), not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minilora.cli import main

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--max-steps", "1", "--eval-interval", "0", "--eval-batches", "1", "--corpus-size", "100", "--no-progress"]


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pipe")
def test_broken_pipe_is_one_line(tmp_path):
    assert main(["pretrain", *TINY, "--out-dir", str(tmp_path / "run")]) == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader leaves (as head does) before the command has written anything
    try:
        proc = subprocess.run([sys.executable, "-m", "minilora.cli", "generate", "--checkpoint",
                               str(tmp_path / "run" / "ckpt.npz"), "--max-new-tokens", "20"],
                              stdout=write_end, stderr=subprocess.PIPE, env=os.environ.copy(),
                              timeout=180)  # generous (CI may be slow): it only turns a hang into a failure
    finally:
        os.close(write_end)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == ["minilora: error: output closed early (broken pipe)"], err
