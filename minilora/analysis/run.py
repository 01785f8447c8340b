"""``minilora analyze``: the low-rank analysis of the demo's full fine-tuning and LoRA runs.

Reads what ``minilora demo`` wrote: ``base.npz`` (W_0), ``adapters/full/`` (every fine-tuned
weight) and ``adapters/lora/`` (A, B and the scale s, for LoRA's update s B A), and writes
``analysis.md``, ``analysis.json`` and ``spectra.png`` next to them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from minilora.analysis.lowrank import KS, MatrixReport, analyze_updates, mean_share, verdict

PLOT_HINT = "pip install 'minilora[plot]'"


class MissingRunError(FileNotFoundError):
    """The folder lacks the demo's outputs (base.npz, adapters/full)."""


def has_demo_outputs(run_dir: str) -> bool:
    return all(os.path.exists(os.path.join(run_dir, p)) for p in ("base.npz", os.path.join("adapters", "full")))


def load_updates(run_dir: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(W_0 by name, fine-tuned weights by name, LoRA's s B A by weight name or None) from a demo folder."""
    return _load(run_dir)[:3]


def block_linear_weights(model: Any) -> set[str]:
    """The weight names of the Linear layers inside the model's blocks (what LoRA adapts; not embeddings or head).

    The blocks are the causal-LM core's ``model.blocks`` (GPT-2's transformer.h, Llama's model.layers), so the
    family says where they are.
    """
    from minilora.nn import Linear  # noqa: PLC0415

    modules = dict(model.named_modules())
    prefix = next(n for n, m in modules.items() if m is model.blocks)
    return {f"{n}.weight" for n, m in modules.items() if n.startswith(prefix + ".") and isinstance(m, Linear)}


def _load(run_dir: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, set[str]]:
    from minilora.peft import PeftConfig  # noqa: PLC0415
    from minilora.peft.io import base_fingerprint, read_adapter  # noqa: PLC0415
    from minilora.train import build_model, load_checkpoint  # noqa: PLC0415

    if not has_demo_outputs(run_dir):
        raise MissingRunError(2, "no demo outputs (base.npz and adapters/full/); run 'minilora demo' first", run_dir)
    ckpt = load_checkpoint(os.path.join(run_dir, "base.npz"))
    base = dict(ckpt.weights)
    model = build_model(ckpt)
    fingerprint = base_fingerprint(model)
    full_dir = os.path.join(run_dir, "adapters", "full")
    meta, full = read_adapter(full_dir)
    _same_base(meta, fingerprint, full_dir)
    lora_dir = os.path.join(run_dir, "adapters", "lora")
    lora = None
    if os.path.isdir(lora_dir):
        meta, arrays = read_adapter(lora_dir)
        _same_base(meta, fingerprint, lora_dir)
        scaling = PeftConfig.from_dict(meta["config"]).scaling
        lora = {}
        for key, a in arrays.items():
            if key.endswith(".lora_A"):
                path = key[: -len(".lora_A")]
                lora[f"{path}.weight"] = (scaling * (arrays[f"{path}.lora_B"] @ a)).astype(a.dtype)  # (out, in)
    return base, full, lora, block_linear_weights(model)


def _same_base(meta: dict[str, Any], fingerprint: str, directory: str) -> None:
    """Refuse an adapter trained on other weights than base.npz (e.g. left over from an earlier demo run)."""
    from minilora.peft.io import AdapterError  # noqa: PLC0415

    if meta.get("base_fingerprint") != fingerprint:
        raise AdapterError(f"{directory} was trained on another base than base.npz next to it (a leftover of an "
                           "earlier run?); rerun 'minilora demo --methods full,lora' into this folder")


@dataclasses.dataclass
class Analysis:
    reports: list[MatrixReport]
    summary: str
    files: dict[str, str]


def run_analysis(run_dir: str, out_dir: str | None = None, ks: Sequence[int] = KS, log: Any = print) -> Analysis:
    """Analyse a demo folder; write analysis.md, analysis.json and spectra.png into ``out_dir`` (default: it)."""
    out_dir = out_dir or run_dir
    os.makedirs(out_dir, exist_ok=True)
    base, full, lora, block_weights = _load(run_dir)
    reports = analyze_updates(base, full, lora, ks)
    blocks = [r for r in reports if r.name in block_weights]
    k_word = 8 if 8 in ks else max(ks)
    summary = verdict(blocks or reports, k_word)
    lines = table(reports, ks)
    files = {name: os.path.join(out_dir, name) for name in ("analysis.md", "analysis.json", "spectra.png")}
    text = ["Low-rank analysis of the full fine-tuning update Delta W = W_finetuned - W_0 "
            f"(from {run_dir}); share of ||Delta W||_F^2 in the top k singular values (random Gaussian matrix "
            "of the same shape in brackets)" + ("; phi_k: LoRA's subspace inside the top k" if lora else "") + ".",
            "", *lines, "", "In plain words: " + summary]
    with open(files["analysis.md"], "w", encoding="utf-8") as f:
        f.write("\n".join(text) + "\n")
    with open(files["analysis.json"], "w", encoding="utf-8") as f:
        json.dump({"summary": summary, "ks": list(ks), "mean_share_blocks": {k: mean_share(blocks, k) for k in ks},
                   "matrices": [dataclasses.asdict(r) for r in reports]}, f, indent=1)
    if not plot_spectra(files["spectra.png"], reports):
        files.pop("spectra.png")
    for line in text:
        log(line)
    log(f"\nwrote {', '.join(files.values())}")
    if "spectra.png" not in files:
        log(f"no spectra picture: matplotlib is not installed ({PLOT_HINT})")
    return Analysis(reports, summary, files)


def table(reports: Sequence[MatrixReport], ks: Sequence[int]) -> list[str]:
    """A Markdown table: one row per matrix."""
    has_lora = any(r.overlap for r in reports)
    head = ["matrix", "shape", "change (Frobenius, relative to W0)", "rank for 90%"] + [f"top {k}" for k in ks]
    if has_lora:
        head += [f"phi_{k}" for k in ks if k <= 8]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in reports:
        cells = [r.name, f"{r.shape[0]}x{r.shape[1]}", f"{r.relative_change:.3f}", str(r.rank90)]
        cells += [f"{100 * r.shares[k]:.0f}% ({100 * r.random_shares[k]:.0f}%)" for k in ks]
        if has_lora:
            cells += ([f"{100 * r.overlap[k]:.0f}% ({100 * r.random_overlap[k]:.0f}%)" for k in ks if k <= 8]
                      if r.overlap else ["" for k in ks if k <= 8])
        out.append("| " + " | ".join(cells) + " |")
    return out


KIND_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F3C8D", "#000000")
LAYER_STYLES = ("-", "--", "-.", ":")


def _kind_and_layer(name: str) -> tuple[str, int | None]:
    """The path after a block's index and that index: "transformer.h.2.attn.c_attn.weight" -> ("attn.c_attn", 2),
    "model.layers.2.self_attn.q_proj.weight" -> ("self_attn.q_proj", 2); matrices outside the blocks -> (name, None)."""
    parts = name.removesuffix(".weight").split(".")
    i = next((i for i, p in enumerate(parts) if p.isdigit()), None)
    if i is None or i == len(parts) - 1:
        return ".".join(parts), None
    return ".".join(parts[i + 1:]), int(parts[i])


def plot_spectra(path: str, reports: Sequence[MatrixReport]) -> bool:
    """Normalised singular values and cumulative energy of every update, against random matrices'; PNG.

    Colour: the kind of matrix (c_attn, c_fc, ...); line style: the layer; dashed grey: a random
    Gaussian matrix of each shape that occurs (no structure: its energy spreads over every direction).
    """
    try:
        import matplotlib  # noqa: PLC0415  (optional extra "plot")

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.lines import Line2D  # noqa: PLC0415
    except ImportError:
        return False
    fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(13, 5))
    kinds: dict[str, str] = {}
    layers: set[int] = set()
    for r in reports:
        kind, layer = _kind_and_layer(r.name)
        s = np.asarray(r.singular_values)  # host: a list of floats
        if not len(s) or s[0] == 0:
            continue
        color = kinds.setdefault(kind, KIND_COLOURS[len(kinds) % len(KIND_COLOURS)])
        ls = LAYER_STYLES[layer % len(LAYER_STYLES)] if layer is not None else "-"
        if layer is not None:
            layers.add(layer)
        i = np.arange(1, len(s) + 1)
        ax_s.semilogy(i, s / s[0], color=color, ls=ls, lw=1.3, alpha=0.85)
        ax_e.plot(i, np.cumsum(s**2) / (s**2).sum(), color=color, ls=ls, lw=1.3, alpha=0.85)
    shapes = sorted({tuple(r.shape) for r in reports}, key=lambda sh: sh[0] * sh[1])
    greys = np.linspace(0.25, 0.65, max(len(shapes), 1))
    handles = [Line2D([], [], color=c, lw=2, label=k) for k, c in kinds.items()]
    handles += [Line2D([], [], color="0.3", ls=LAYER_STYLES[l % len(LAYER_STYLES)], lw=1.3, label=f"layer {l}")
                for l in sorted(layers)]
    for shape, grey in zip(shapes, greys):  # the no-structure baseline of every shape that occurs
        g = np.linalg.svd(np.random.default_rng(0).standard_normal(shape), compute_uv=False)  # host
        i = np.arange(1, len(g) + 1)
        style = {"color": str(grey), "ls": (0, (5, 2)), "lw": 2.0}
        ax_s.semilogy(i, g / g[0], **style)
        ax_e.plot(i, np.cumsum(g**2) / (g**2).sum(), **style)
        handles.append(Line2D([], [], label=rf"random ${shape[0]} \times {shape[1]}$", **style))
    ax_s.set(title=r"singular values of $\Delta W$ (divided by the largest)", xlabel=r"index $i$",
             ylabel=r"$\sigma_i / \sigma_1$", xscale="log")
    ax_e.set(title=r"share of $\|\Delta W\|_F^2$ in the top $k$ directions", xlabel=r"$k$",
             ylabel=r"$\sum_{i \leq k} \sigma_i^2 \,/\, \sum_i \sigma_i^2$", xscale="log", ylim=(0, 1.02))
    for ax in (ax_s, ax_e):
        ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
