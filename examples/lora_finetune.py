"""LoRA end to end: pre-train a small GPT, fine-tune rank-8 adapters on a new domain, save, reload, merge.

    python examples/lora_finetune.py                  # about a minute on 2 CPU cores
    python examples/lora_finetune.py --device cuda    # the same code on CuPy

1. pre-train a GPT on the built-in "english" corpus (every weight trains);
2. get_peft_model(model, LoraConfig(...)): the base is frozen, lora_A/lora_B are added to c_attn;
3. fine-tune on "arithmetic" ("12+34=46") with the shared Trainer; only the adapter trains;
4. save the adapter (a few kB), load it onto a fresh copy of the base, and merge it into the weights.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from typing import Any

import numpy as np

import minilora as ml
from minilora.data import CharTokenizer, get_corpus, train_val_split
from minilora.nn import GPT, GPTConfig
from minilora.peft import LoraConfig, get_peft_model, load_adapter
from minilora.train import LMTask, TrainConfig, Trainer


def fit(model: Any, tokens: np.ndarray, steps: int, lr: float, args: argparse.Namespace) -> tuple[float, float]:
    """Train ``model`` (its trainable parameters) on ``tokens``; (val loss before, after)."""
    train, val = train_val_split(tokens, 0.1)
    cfg = TrainConfig(max_steps=steps, batch_size=args.batch_size, lr=lr, warmup_steps=steps // 10,
                      eval_interval=0, eval_batches=4, weight_decay=0.0, device=args.device, progress=not args.quiet)
    task = LMTask(train, val, args.block_size, args.batch_size, device=args.device, eval_batches=4)
    history = Trainer(model, task, cfg).fit()
    return history.val_loss[0], history.val_loss[-1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--pretrain-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    tok = CharTokenizer.default()
    ml.manual_seed(0)
    base = GPT(GPTConfig(tok.vocab_size, args.block_size, args.n_layer, n_head=2, n_embd=args.n_embd))
    fit(base, tok.encode(get_corpus("english").text), args.pretrain_steps, 3e-3, args)
    pristine = copy.deepcopy(base)  # the base as it is on disk, for reloading below

    # LoRA: W0 frozen, h = W0 x + (alpha / r) B A x on the fused q/k/v projection of every block
    model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=("c_attn",)))
    model.print_trainable_parameters()
    frozen = {n: p.numpy() for n, p in model.named_parameters() if not p.requires_grad}
    before, after = fit(model, tok.encode(get_corpus("arithmetic").text), args.steps, 3e-3, args)
    print(f"arithmetic validation loss: {before:.4f} before, {after:.4f} after LoRA fine-tuning")
    unchanged = all(np.array_equal(p.numpy(), frozen[n]) for n, p in model.named_parameters() if n in frozen)
    print(f"frozen base weights bit-identical after training: {unchanged}")

    with tempfile.TemporaryDirectory() as d:
        size = model.save_adapter(d)
        print(f"adapter on disk: {size:,} bytes ({', '.join(sorted(os.listdir(d)))})")
        reloaded = load_adapter(pristine.to(args.device), d)  # refuses any other base (fingerprint check)
    x = ml.tensor(tok.encode("12+34=").reshape(1, -1), device=args.device)
    same = np.allclose(reloaded(x)[0].numpy(), model(x)[0].numpy(), atol=1e-5)
    merged = reloaded.merge_and_unload()  # a plain GPT again, adapter folded into c_attn.weight
    out = merged.generate(x, 6, temperature=0)
    print(f"reloaded adapter gives the same logits: {same}; merged greedy sample: {tok.decode(out.numpy()[0])!r}")
    return {"before": before, "after": after, "unchanged": unchanged, "size": size, "same": same}


if __name__ == "__main__":
    main()
