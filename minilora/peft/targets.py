"""Which modules a method wraps: exact names, name suffixes, a regular expression, or "all-linear".

- a tuple/list of names: each entry matches a module path exactly or as a suffix of whole dotted
  components ("c_proj" matches "transformer.h.0.mlp.c_proj" and "attn.c_proj" matches
  "transformer.h.0.attn.c_proj", but "proj" matches neither); every entry must match something;
- a str: a regular expression that must match the WHOLE module path (as Hugging Face PEFT does);
- "all-linear": every Linear (or Linear4bit) except the output heads (lm_head, a classifier's score).

Modules inside an existing PEFT layer (its base_layer, adapter weights) are never candidates; the
PEFT layer itself stands at the original path, so a second adapter targets the same names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from minilora.nn import Linear, Module
from minilora.peft.base_layer import PeftLayer
from minilora.peft.linear4bit import Linear4bit

OUTPUT_HEADS = ("lm_head", "score")


def candidate_modules(model: Module) -> list[tuple[str, Module]]:
    """(path, module) of every module of the model, without the insides of PEFT layers and without the root."""
    out: list[tuple[str, Module]] = []
    peft_paths: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in peft_paths):
            continue
        if isinstance(module, PeftLayer):
            peft_paths.append(name)
        out.append((name, module))
    return out


def _matches(name: str, entry: str) -> bool:
    return name == entry or name.endswith("." + entry)


def is_linear(module: Module) -> bool:
    """A layer the linear methods can wrap: a Linear or an NF4-quantised Linear4bit."""
    return isinstance(module, (Linear, Linear4bit))


def _is_linear(module: Module) -> bool:
    """A Linear, a Linear4bit, or a PEFT layer already wrapping one (a second adapter targets it again)."""
    return is_linear(module) or (isinstance(module, PeftLayer) and _is_linear(module.base_layer))


def _describe(names: Iterable[str], limit: int = 80) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def match_targets(
    model: Module, target_modules: str | Iterable[str], *, linear_only: bool = True, method: str = "LoRA"
) -> list[str]:
    """The module paths selected by ``target_modules`` (see the module docstring), in model order.

    Raises ValueError when an entry matches nothing (listing the model's module names) and TypeError
    when ``linear_only`` and a matched module is not a Linear layer.
    """
    modules = candidate_modules(model)
    names = [n for n, _ in modules]
    if isinstance(target_modules, str) and target_modules == "all-linear":
        chosen = [n for n, m in modules if _is_linear(m) and n.rpartition(".")[2] not in OUTPUT_HEADS]
        if not chosen:
            raise ValueError(f"target_modules='all-linear': the model has no Linear layers; its modules: "
                             f"{_describe(names)}")
        return chosen
    if isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as exc:
            raise ValueError(f"target_modules: {target_modules!r} is not a valid regular expression ({exc})") from None
        chosen = [n for n in names if pattern.fullmatch(n)]
        if not chosen:
            raise ValueError(
                f"target_modules: the regular expression {target_modules!r} (full match) matches no module; "
                f"the model's modules are: {_describe(names)}"
            )
    else:
        entries = list(target_modules)
        if not entries:
            raise ValueError("target_modules is empty: name at least one module (a dotted suffix, or 'all-linear')")
        missing = [e for e in entries if not any(_matches(n, e) for n in names)]
        if missing:
            raise ValueError(
                f"target_modules: {missing} match no module (exact name or dotted suffix); "
                f"the model's modules are: {_describe(names)}"
            )
        chosen = [n for n in names if any(_matches(n, e) for e in entries)]
    if linear_only:
        by_name = dict(modules)
        bad = [f"{n} ({type(by_name[n]).__name__})" for n in chosen if not _is_linear(by_name[n])]
        if bad:
            raise TypeError(
                f"target_modules: {method} can only wrap Linear (or Linear4bit) layers, but these matched: "
                f"{_describe(bad, 10)}"
            )
    return chosen
