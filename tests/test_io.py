"""minilora.io: atomic files and folders, recovery after a kill mid-swap, stale temp cleanup, file modes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from minilora import io

SAVE = """
import sys
from minilora import io
with io.atomic_folder(sys.argv[1]) as f:
    f.write_text("a.txt", sys.argv[2])
    f.write_text("b.txt", sys.argv[2])
"""


def _save_killed_at(folder, text, point):
    env = {**os.environ, io.TEST_HOOK: point}
    proc = subprocess.run([sys.executable, "-c", SAVE, str(folder), text], env=env, capture_output=True,
                          timeout=120)  # generous (CI may be slow): it only turns a hang into a failure
    assert proc.returncode == -9, proc.stderr.decode()  # SIGKILL


def _read(folder):
    d = io.resolve_folder(folder)
    return (d / "a.txt").read_text(), (d / "b.txt").read_text()


@pytest.mark.parametrize("point", ["folder-between-files", "folder-before-swap", "folder-between-renames"])
def test_a_kill_leaves_the_old_or_the_new_set_and_the_next_save_cleans_up(tmp_path, point):
    target = tmp_path / "adapter"
    with io.atomic_folder(target) as f:
        f.write_text("a.txt", "old")
        f.write_text("b.txt", "old")
    _save_killed_at(target, "new", point)
    got = _read(target)
    assert got in (("old", "old"), ("new", "new"))
    assert got == (("new", "new") if point == "folder-between-renames" else ("old", "old"))
    with io.atomic_folder(target) as f:  # the next save recovers and removes every leftover
        f.write_text("a.txt", "3rd")
        f.write_text("b.txt", "3rd")
    assert _read(target) == ("3rd", "3rd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_files_the_save_does_not_write_are_kept(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "README.md").write_text("mine")
    with io.atomic_folder(tmp_path / "m") as f:
        f.write_text("config.json", "{}")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json"]


def test_a_failing_save_leaves_the_target_untouched(tmp_path):
    with io.atomic_folder(tmp_path / "m") as f:
        f.write_text("a.txt", "old")
    with pytest.raises(RuntimeError), io.atomic_folder(tmp_path / "m") as f:
        f.write_text("a.txt", "new")
        raise RuntimeError("disk full")
    assert (tmp_path / "m" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_modes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io.atomic_write_npz(tmp_path / "x.npz", {"a": np.zeros(2)})
        with io.atomic_folder(tmp_path / "d") as f:
            f.write_text("a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "x.npz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "a.txt").stat().st_mode & 0o777 == 0o644


def test_stale_temp_files_of_a_dead_writer_are_removed(tmp_path):
    dead = tmp_path / ".ckpt.npz.999999999.abcd1234.tmp"
    dead.write_bytes(b"x" * 100)
    other = tmp_path / ".other.npz.999999999.abcd1234.tmp"  # another target's: left alone
    other.write_bytes(b"x")
    legacy = tmp_path / ".ckpt.npz.k3j_x9a2.tmp"  # an older minilora's mkstemp name, an hour old
    legacy.write_bytes(b"x")
    os.utime(legacy, (legacy.stat().st_atime - 3600, legacy.stat().st_mtime - 3600))
    io.atomic_write_npz(tmp_path / "ckpt.npz", {"a": np.zeros(2)})
    assert not dead.exists() and not legacy.exists() and other.exists()


def test_read_npz_checks_the_directory_before_reading(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("w.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.zeros(2_000_000, np.float32))
    with pytest.raises(io.ArchiveError, match="missing key 'meta'"):
        io.read_npz(bomb, first="meta")
    with pytest.raises(io.ArchiveError, match="declares"):
        io.read_npz(bomb)
    np.savez(tmp_path / "ok.npz", w=np.zeros((2, 3), np.float32))
    with pytest.raises(io.ArchiveError, match=r"shape \(2, 3\) in the file, \(3, 2\) expected"):
        io.read_npz(tmp_path / "ok.npz", want={"w": (3, 2)})


def test_sigterm_during_a_save_removes_its_temporary_files(tmp_path):
    """The CLI turns SIGTERM into KeyboardInterrupt, so an interrupted folder save cleans up after itself."""
    out = tmp_path / "run"
    argv = ["pretrain", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size",
            "2", "--max-steps", "1", "--eval-batches", "1", "--corpus-size", "60", "--no-progress",
            "--out-dir", str(out)]
    env = {**os.environ, io.TEST_HOOK: "folder-between-files:1:TERM"}
    proc = subprocess.run([sys.executable, "-m", "minilora.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=180)  # generous (CI may be slow): it only turns a hang into a failure
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "minilora: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder beside it
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]  # only the live log: no half-saved set
