"""Crash trials: a save of each kind killed with SIGKILL at a chosen or random moment, then loaded.

Each trial saves version 1 of an object (in this process), then forks a child that saves version 2 over it
and is killed: at a test-only crash point of minilora.io (``point``: between the files of a folder, before
the swap, between its two renames, before a file's rename) or after ``delay`` seconds while it saves version 2
again and again. The target is then read with the kind's own loader: it must give version 1 or version 2,
value for value. Finally version 3 is saved over it, which must load, and no temporary file of the target may
remain. Used by tests/test_crash.py (a few trials) and benchmarks/crash_trials.py (20 per kind). POSIX only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from minilora import io

POINTS = {  # the crash points each kind of save passes
    "checkpoint": ("file-before-rename",),
    "adapter": ("folder-between-files", "folder-before-swap", "folder-between-renames"),
    "peft": ("folder-between-files", "folder-before-swap", "folder-between-renames"),
    "hf": ("folder-between-files", "folder-before-swap", "folder-between-renames"),
    "run": ("folder-between-files", "folder-before-swap", "folder-between-renames"),
}


def _gpt(version: int, n_layer: int = 1) -> Any:
    import minilora as ml  # noqa: PLC0415
    from minilora import nn  # noqa: PLC0415

    ml.manual_seed(version)
    return nn.GPT(nn.GPTConfig(vocab_size=96, block_size=8, n_layer=n_layer, n_head=2, n_embd=16))


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):
            for k in sorted(part):
                h.update(k.encode())
                v = part[k]
                h.update(np.ascontiguousarray(v).tobytes() if isinstance(v, np.ndarray) else repr(v).encode())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()


def _host_state(model: Any) -> dict[str, np.ndarray]:
    from minilora import backend  # noqa: PLC0415

    return {k: backend.to_host(v) for k, v in model.state_dict().items()}  # host


# ----------------------------------------------------------------------------- the five kinds
def _hf_model(version: int) -> Any:
    if version != 2:
        return _gpt(version, n_layer=version)
    import minilora as ml  # noqa: PLC0415
    from minilora.nn.llama import LlamaConfig, LlamaForCausalLM  # noqa: PLC0415

    ml.manual_seed(version)
    return LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))


def _adapter_model(version: int) -> Any:
    import minilora as ml  # noqa: PLC0415
    from minilora import peft  # noqa: PLC0415

    model = peft.get_peft_model(_gpt(0), peft.LoraConfig(r=2, lora_alpha=8 * version))
    ml.manual_seed(version)
    rng = np.random.default_rng(version)
    for p in model.adapter_state().values():
        p.data = rng.standard_normal(p.shape).astype(np.float32)
    return model


def _adapter_digest(target: Path, fmt: str) -> str:
    from minilora import peft  # noqa: PLC0415

    model = peft.load_adapter(_gpt(0), str(target), format=fmt)
    config = model.peft_config["default"]
    state = {k: np.asarray(p.data) for k, p in model.adapter_state().items()}  # host: numpy models
    return _digest(state, config.lora_alpha, config.r)


def _run_trainer(version: int, out_dir: Path) -> Any:
    from minilora.data import CharTokenizer  # noqa: PLC0415
    from minilora.train import LMTask, TrainConfig, Trainer  # noqa: PLC0415

    tok = CharTokenizer.default()
    tokens = tok.encode("a crash test corpus, long enough for a few windows. " * 4)
    cfg = TrainConfig(max_steps=10, batch_size=2, warmup_steps=0, eval_interval=0, eval_batches=1, progress=False,
                      out_dir=str(out_dir))
    trainer = Trainer(_gpt(version), LMTask(tokens, tokens, 8, 2, eval_batches=1), cfg, tokenizer=tok)
    trainer.step = version
    trainer._metrics = [json.dumps({"step": s, "loss": float(version)}) + "\n" for s in range(1, version + 1)]
    trainer.run_files = {"config.json": json.dumps({"version": version}), "vocab.json": json.dumps(tok.to_dict())}
    return trainer


def _run_digest(target: Path) -> str:
    from minilora.train import load_checkpoint  # noqa: PLC0415

    folder = io.resolve_folder(target)
    ckpt = load_checkpoint(folder / "ckpt.npz")
    files = {n: (folder / n).read_text(encoding="utf-8") for n in ("config.json", "vocab.json", "metrics.jsonl")}
    if json.loads(files["config.json"])["version"] != ckpt.step:
        raise AssertionError(f"{folder}: config.json does not match ckpt.npz (a mixture)")
    return _digest(ckpt.weights, ckpt.step, files)


@dataclasses.dataclass
class Kind:
    make: Callable[[int, Path], Any]  # (version, target) -> the object to save
    save: Callable[[Any, Path], None]
    load: Callable[[Path], str]  # the kind's own loader, then a digest of every value


def _kinds() -> dict[str, Kind]:
    from minilora.hf import from_pretrained, save_pretrained  # noqa: PLC0415
    from minilora.train import load_checkpoint, save_checkpoint  # noqa: PLC0415

    def ckpt_load(t: Path) -> str:
        ckpt = load_checkpoint(t)
        return _digest(ckpt.weights, ckpt.step)

    return {
        "checkpoint": Kind(lambda v, t: _gpt(v), lambda m, t: save_checkpoint(t, m), ckpt_load),
        "adapter": Kind(lambda v, t: _adapter_model(v), lambda m, t: m.save_adapter(str(t)),
                        lambda t: _adapter_digest(t, "minilora")),
        "peft": Kind(lambda v, t: _adapter_model(v), lambda m, t: m.save_adapter(str(t), format="peft"),
                     lambda t: _adapter_digest(t, "peft")),
        # another architecture each version (GPT-2, Llama, a deeper GPT-2): a mixture cannot load
        "hf": Kind(lambda v, t: _hf_model(v), lambda m, t: save_pretrained(m, t),
                   lambda t: _digest(_host_state(m := from_pretrained(t)), type(m).__name__)),
        "run": Kind(lambda v, t: _run_trainer(v, t), lambda tr, t: tr.save(), _run_digest),
    }


# ----------------------------------------------------------------------------- one trial
@dataclasses.dataclass
class Trial:
    kind: str
    moment: str  # the crash point, or "after 12.3 ms"
    outcome: str  # "old", "new", or what went wrong
    leftovers: list[str]  # temporary entries of the target left after the next save

    @property
    def ok(self) -> bool:
        return self.outcome in ("old", "new") and not self.leftovers


def _fork_save(kind: Kind, obj: Any, target: Path, point: str | None, delay: float) -> None:
    pid = os.fork()
    if pid == 0:  # the child: save version 2 until killed (a crash point kills it on the first pass)
        try:
            io._HOOK_COUNTS.clear()
            if point:
                os.environ[io.TEST_HOOK] = point
            while True:
                kind.save(obj, target)
                if point:
                    break
        finally:
            os._exit(3)  # only reached when the crash point was never passed
    if point is None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        raise RuntimeError(f"the saving child was not killed (status {status}): crash point {point!r} not passed?")


def run_trial(name: str, workdir: Path, point: str | None = None, delay: float = 0.0,
              digests: dict[tuple[str, int], str] | None = None) -> Trial:
    """One trial of kind ``name`` in ``workdir`` (see the module docstring)."""
    kind = _kinds()[name]
    digests = {} if digests is None else digests
    for v in (1, 2, 3):  # each version's values, saved and loaded once in a scratch folder
        if (name, v) not in digests:
            scratch = workdir / f"scratch-{name}-{v}"
            kind.save(kind.make(v, scratch), scratch)
            digests[name, v] = kind.load(scratch)
    target = workdir / f"{name}-target"
    first = kind.make(1, target)
    kind.save(first, target)
    second = kind.make(2, target)
    _fork_save(kind, second, target, point, delay)
    try:
        got = kind.load(target)
        outcome = {digests[name, 1]: "old", digests[name, 2]: "new"}.get(got, "a mixture (neither old nor new)")
    except Exception as exc:  # noqa: BLE001  (a trial reports what went wrong, it does not stop the run)
        outcome = f"unloadable: {type(exc).__name__}: {exc}"
    third = kind.make(3, target)
    kind.save(third, target)
    if kind.load(target) != digests[name, 3]:
        outcome += "; the next save did not load back"
    leftovers = sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))
    return Trial(name, point or f"after {delay * 1e3:.1f} ms", outcome, leftovers)
