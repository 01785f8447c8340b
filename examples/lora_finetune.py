"""LoRA end to end: pre-train a small GPT, fine-tune rank-8 adapters on a new task, save, reload, merge.

    python examples/lora_finetune.py                  # a few minutes on 2 CPU cores
    python examples/lora_finetune.py --device cuda    # the same code on CuPy

1. pre-train a GPT on the built-in "english" corpus (every weight trains; the settings of `minilora pretrain`);
2. get_peft_model(model, LoraConfig(...)): the base is frozen, lora_A/lora_B are added to every Linear;
3. fine-tune on "sentiment" ("the plot was not dull => positive") as completions: the loss is on the
   verdict only (CompletionTask); only the adapter trains;
4. print held-out reviews with the model's greedy verdict, and the exact-match accuracy before and after;
5. save the adapter (a few kB), load it onto a fresh copy of the base, and merge it into the weights.
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
from minilora.train import CompletionTask, LMTask, TrainConfig, Trainer, greedy_samples


def train(model: Any, task: Any, steps: int, lr: float, weight_decay: float, args: argparse.Namespace) -> Any:
    """AdamW with warmup and cosine decay on ``model``'s trainable parameters; the trainer's History."""
    cfg = TrainConfig(max_steps=steps, batch_size=args.batch_size, lr=lr, warmup_steps=min(30, steps // 10),
                      eval_interval=0, eval_batches=4, weight_decay=weight_decay, seed=args.seed, device=args.device,
                      progress=not args.quiet)
    return Trainer(model, task, cfg).fit()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--pretrain-steps", type=int, default=600)
    p.add_argument("--steps", type=int, default=1000, help="LoRA steps (what this 2-layer base needs)")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", default="all-linear", help="LoRA's target modules (default every Linear)")
    p.add_argument("--examples", type=int, default=4000, help="sentiment examples to generate (10%% held out)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    tok = CharTokenizer.default()
    ml.manual_seed(args.seed)
    base = GPT(GPTConfig(tok.vocab_size, args.block_size, args.n_layer, n_head=4, n_embd=args.n_embd)).to(args.device)
    english_train, english_val = train_val_split(tok.encode(get_corpus("english").text), 0.1)
    train(base, LMTask(english_train, english_val, args.block_size, args.batch_size, seed=args.seed,
                       device=args.device, eval_batches=4), args.pretrain_steps, 6e-3, 0.1, args)
    pristine = copy.deepcopy(base)  # the base as it is on disk, for reloading below

    # LoRA: W0 frozen, h = W0 x + (alpha / r) B A x on every Linear of every block (c_attn, c_proj, c_fc)
    targets = args.targets if args.targets == "all-linear" else tuple(args.targets.split(","))
    model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=targets))
    model.print_trainable_parameters()
    frozen = {n: p.numpy() for n, p in model.named_parameters() if not p.requires_grad}
    reviews, held_out = train_val_split(get_corpus("sentiment", n=args.examples).pairs, 0.1)
    held_out = held_out[:256]
    task = CompletionTask(reviews, held_out, tok, args.block_size, args.batch_size, seed=args.seed,
                          device=args.device)
    history = train(model, task, args.steps, args.lr, 0.0, args)
    before, after = history.val_metrics[0], history.val_metrics[-1]
    print(f"sentiment, {len(held_out)} held-out reviews: loss on the verdict {before['val_loss']:.3f} -> "
          f"{after['val_loss']:.3f}, exact-match accuracy {100 * before['val_accuracy']:.1f}% -> "
          f"{100 * after['val_accuracy']:.1f}%")
    for prompt, expected, got in greedy_samples(model, tok, held_out[:4], args.block_size, args.device):
        print(f"  {prompt.strip()!r} -> {got!r}  (expected {expected!r})")
    unchanged = all(np.array_equal(p.numpy(), frozen[n]) for n, p in model.named_parameters() if n in frozen)
    print(f"frozen base weights bit-identical after training: {unchanged}")

    with tempfile.TemporaryDirectory() as d:
        size = model.save_adapter(d)
        print(f"adapter on disk: {size:,} bytes ({', '.join(sorted(os.listdir(d)))})")
        reloaded = load_adapter(pristine, d)  # refuses any other base (fingerprint check); eval mode
    x = ml.tensor(tok.encode("\nthe plot was not dull => ").reshape(1, -1), device=args.device)
    same = np.allclose(reloaded(x)[0].numpy(), model.eval()(x)[0].numpy(), atol=1e-5)
    merged = reloaded.merge_and_unload()  # a plain GPT again, adapter folded into c_attn.weight
    out = tok.decode(merged.generate(x, 9, temperature=0).numpy()[0])
    print(f"reloaded adapter gives the same logits: {same}; merged greedy sample: {out.strip()!r}")
    return {"before": before, "after": after, "unchanged": unchanged, "size": size, "same": same, "sample": out}


if __name__ == "__main__":
    main()
