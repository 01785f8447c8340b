"""Atomic saves of files and of whole folders, and careful reading of .npz archives: the one place for both.

**A file** (``atomic_path``, ``atomic_write_npz``, ``atomic_write_text``) is written to a temporary file
``.NAME.<pid>.<random>.tmp`` in the target's folder, flushed and fsync'ed, ``os.replace``d over the
target (atomic on POSIX and Windows), and the folder is fsync'ed so the rename itself is durable.

**A folder** (``atomic_folder``: an adapter, a PEFT-format or Hugging Face folder, a training run) is
written as a unit. The new set of files is built in ``.NAME.<pid>.<random>.tmp/`` beside the target
(files the save does not write are hard-linked in from the current folder, so they stay), fsync'ed,
then renamed to ``.NAME.<pid>.<random>.new/``: from that moment it is a complete set. Then the current
folder is renamed to ``.NAME.<...>.old/``, the new one to NAME, and the old one is removed. A kill at any
moment leaves NAME complete, or, between the two renames, no NAME but a complete ``.new`` (and the
``.old``): ``resolve_folder`` (which every loader calls) then returns the ``.new`` set, else the ``.old``
one, and the next save of that target puts things right. A ``.tmp`` is never read.

Temporary files and folders carry the writer's pid: the next save of the same target removes the ones
whose process is gone (and its own), and a failed or interrupted save (KeyboardInterrupt, SIGTERM turned
into one by the CLI) removes its own. Files and folders get the modes a plain ``open()``/``mkdir()``
would give (0666 / 0777 less the umask), not ``mkstemp``'s 0600.

**Reading** (``read_npz``): the zip directory is checked before any array is read: the expected members
are present (``meta`` first), each member is stored (minilora never compresses, so a member cannot
declare more bytes than the file holds), and each array's header (shape, dtype) agrees with its declared
size; only then is data read, with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TEST_HOOK = "MINILORA_TEST_KILL_AT"  # tests only: "<point>[:<n>[:TERM]]" SIGKILLs (or SIGTERMs) this process at
# the n-th such point


def _hook(point: str) -> None:
    """A test-only crash point (see TEST_HOOK); nothing happens unless the variable names this point."""
    spec = os.environ.get(TEST_HOOK)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    count, _, sig = rest.partition(":")
    if name != point:
        return
    seen = _HOOK_COUNTS[point] = _HOOK_COUNTS.get(point, 0) + 1
    if seen >= int(count or 1):
        import signal  # noqa: PLC0415

        os.kill(os.getpid(), signal.SIGTERM if sig == "TERM" else signal.SIGKILL)


_HOOK_COUNTS: dict[str, int] = {}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_name(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers are stale too: this save replaces them
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _siblings(target: Path, kind: str) -> list[Path]:
    """Temporary files/folders of ``target`` of one kind ("tmp", "new", "old"), oldest name order."""
    prefix = f".{target.name}."
    if not target.parent.is_dir():
        return []
    out = []
    for entry in target.parent.iterdir():
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(f".{kind}")):
            continue
        middle = name[len(prefix) : -len(kind) - 1].split(".")
        if len(middle) == 2 and middle[0].isdigit():
            out.append(entry)
    return sorted(out)


def _legacy_temps(target: Path, age: float = 600.0) -> list[Path]:
    """``.NAME.<random>.tmp`` files of older minilora saves (mkstemp, no pid) untouched for ``age`` seconds."""
    import time  # noqa: PLC0415

    prefix, now = f".{target.name}.", time.time()
    if not target.parent.is_dir():
        return []
    out = []
    for entry in target.parent.iterdir():
        middle = entry.name[len(prefix) : -len(".tmp")]
        if (entry.name.startswith(prefix) and entry.name.endswith(".tmp") and middle and "." not in middle
                and entry.is_file() and now - entry.stat().st_mtime > age):
            out.append(entry)
    return out


def _pid_of(entry: Path) -> int:
    return int(entry.name.rsplit(".", 3)[-3])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of earlier, killed saves of ``target`` (their writer is gone); the removed paths.

    A folder target is first made whole (``recover_folder``), so no complete set is ever removed.
    """
    target = Path(target)
    recover_folder(target)
    removed = []
    for entry in _legacy_temps(target):
        _remove(entry)
        removed.append(entry)
    for kind in ("tmp", "new", "old"):
        for entry in _siblings(target, kind):
            if kind == "tmp" and _pid_alive(_pid_of(entry)):
                continue  # another process is writing this target right now
            _remove(entry)
            removed.append(entry)
    return removed


# ----------------------------------------------------------------------------- files
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory (a file was to be written here)", str(path))
    clean_stale(path)
    tmp = _temp_name(path, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the mode open() gives: 0666 less the umask
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _hook("file-before-rename")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename durable (POSIX; some systems cannot open or fsync a folder, and then nothing is done)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def storable(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """bfloat16 arrays as float32 (exact: bfloat16 is float32 cut short): .npz has no bfloat16 type, and a
    load casts them back to the parameter's dtype."""
    return {k: a.astype(np.float32) if a.dtype.name == "bfloat16" else a for k, a in arrays.items()}


def atomic_write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """Write host arrays as an uncompressed .npz, atomically (read back with ``read_npz``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **storable(arrays))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- folders
def recover_folder(target: str | os.PathLike[str]) -> None:
    """After a save killed between its two renames (no ``target``), rename the complete set back to ``target``."""
    target = Path(target)
    if target.exists():
        return
    for kind in ("new", "old"):
        found = _siblings(target, kind)
        if found:
            with contextlib.suppress(OSError):
                os.rename(found[-1], target)
                fsync_dir(target.parent)
            return


def resolve_folder(target: str | os.PathLike[str]) -> Path:
    """The folder a loader should read for ``target``: itself, or (a save was killed mid-swap) the complete set."""
    target = Path(target)
    if target.exists():
        return target
    for kind in ("new", "old"):
        found = _siblings(target, kind)
        if found:
            return found[-1]
    return target


def _link_tree(src: Path, dst: Path, skip: set[str]) -> None:
    """Hard-link (copy where links are impossible) ``src``'s entries into ``dst``, but for the names in ``skip``."""
    for entry in src.iterdir():
        out = dst / entry.name
        if entry.name in skip or out.exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            out.mkdir()
            _link_tree(entry, out, set())
        else:
            try:
                os.link(entry, out, follow_symlinks=False)
            except OSError:
                shutil.copy2(entry, out, follow_symlinks=False)


class FolderWriter:
    """What ``atomic_folder`` yields: ``path(name)`` is where to write file ``name`` of the new set."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[str] = []

    def path(self, name: str) -> Path:
        if self.written:
            _hook("folder-between-files")
        self.written.append(name)
        return self.root / name

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def write_npz(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        with open(self.path(name), "wb") as f:
            np.savez(f, **storable(arrays))


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str], keep_others: bool = True) -> Iterator[FolderWriter]:
    """Write a folder as a unit (see the module docstring): the block writes the new files into the writer.

    ``keep_others`` carries the files of the current folder that the block does not write (a tokenizer beside
    a model, a user's README) into the new set. If the block raises, the target is untouched.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory (a folder was to be saved here)", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _temp_name(target, "tmp")
    os.mkdir(tmp)  # 0777 less the umask, as mkdir gives
    new = tmp.with_name(tmp.name[: -len(".tmp")] + ".new")
    old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
    writer = FolderWriter(tmp)
    try:
        yield writer
        if keep_others and target.is_dir():
            _link_tree(target, tmp, set(writer.written))
        for entry in tmp.rglob("*"):
            if entry.is_file() and not entry.is_symlink():
                _fsync_file(entry)
        fsync_dir(tmp)
        _hook("folder-before-swap")
        os.rename(tmp, new)  # from here on a complete set is on disk
        fsync_dir(target.parent)
        if target.exists():
            os.rename(target, old)
            fsync_dir(target.parent)
            _hook("folder-between-renames")
        os.rename(new, target)
        fsync_dir(target.parent)
    finally:
        _remove(tmp)
    _remove(old)


# ----------------------------------------------------------------------------- reading
class ArchiveError(ValueError):
    """An .npz archive that cannot be read safely: the message names the file and the problem."""


def read_npz(path: str | os.PathLike[str], first: str | None = None,
             want: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Every array of an .npz, checked from the zip directory before any data is read (see the module docstring).

    ``first``: a member that must be present (named in the error when missing, before anything else is looked at);
    ``want``: expected shapes of some members, compared with their headers before any data is read.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename[: -len(".npy")] if i.filename.endswith(".npy") else i.filename: i
                     for i in zf.infolist()}
            if first is not None and first not in infos:
                raise ArchiveError(f"{path}: missing key {first!r} (not a minilora file of this kind)")
            declared = sum(i.file_size for i in infos.values())
            if declared > size:
                raise ArchiveError(f"{path}: the archive declares {declared:,} bytes of arrays but the file holds "
                                   f"{size:,} (compressed or forged members; minilora writes them uncompressed)")
            problems = []
            for key, info in infos.items():
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)  # the header only, no data
                    header = f.tell()
                if dtype.hasobject:
                    problems.append(f"{key}: dtype {dtype} holds Python objects (never loaded)")
                elif header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != info.file_size:
                    problems.append(f"{key}: header says {shape} {dtype}, which is not the {info.file_size:,} "
                                    "bytes the archive declares")
                elif want and key in want and tuple(shape) != tuple(want[key]):
                    problems.append(f"{key}: shape {tuple(shape)} in the file, {tuple(want[key])} expected")
            if problems:
                raise ArchiveError(f"{path}: " + "; ".join(problems))
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}  # reads every member: CRC errors surface here
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ArchiveError(f"{path}: not a readable archive (corrupt or truncated file: {exc})") from None


def nonfinite_names(arrays: dict[str, np.ndarray]) -> list[str]:
    """The names of the floating host arrays holding NaN or Inf, in order (what a loader refuses, named)."""
    return [k for k, a in arrays.items() if np.dtype(a.dtype).kind == "f" and not np.isfinite(a).all()]  # host


def check_header(meta: object, format: str, version: int, source: str, error: type[Exception] = ValueError) -> None:
    """The format/version header every saved minilora file carries: the expected ``format`` and a version
    no newer than ``version``, else ``error`` with one line naming ``source``."""
    what = format.removeprefix("minilora-")
    if not isinstance(meta, dict):
        raise error(f"{source}: expected a JSON object, got a JSON {type(meta).__name__}")
    got = meta.get("format")
    if got != format:
        raise error(f"{source}: not a minilora {what} (format {got!r})")
    v = meta.get("version", 0)  # type: ignore[union-attr]
    if not isinstance(v, int) or isinstance(v, bool):
        raise error(f"{source}: {what} field 'version' must be an integer, got {v!r}")
    if v > version:
        raise error(f"{source}: {what} format version {v} is newer than this minilora's ({version})")
