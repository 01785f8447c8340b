"""QLoRA end to end: pre-train a small GPT, store its Linear weights as NF4, fine-tune LoRA on top.

    python examples/qlora_finetune.py                  # a minute or two on 2 CPU cores
    python examples/qlora_finetune.py --device cuda    # the same code on CuPy

1. pre-train a GPT on the built-in "english" corpus (every weight trains);
2. quantize: every Linear but the (tied) head becomes a Linear4bit holding NF4 codes (4.127 bits/weight);
3. fine-tune rank-8 LoRA adapters on the "alien" corpus through the frozen 4-bit base;
4. show the validation loss before/after, the storage, and that the 4-bit base did not change.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

import minilora as ml
from minilora import backend
from minilora.data import CharTokenizer, get_corpus, train_val_split
from minilora.nn import GPT, GPTConfig, Module
from minilora.peft import LoraConfig, get_peft_model
from minilora.peft.qlora import storage_report
from minilora.train import History, LMTask, TrainConfig, Trainer


def fit(model: Module, train: np.ndarray, val: np.ndarray, steps: int, lr: float, args: argparse.Namespace) -> History:
    """Constant-lr AdamW on the parameters that require grad (for QLoRA: the LoRA matrices only), with the shared
    Trainer; validation loss (first 4 fixed windows of ``val``) before and after."""
    cfg = TrainConfig(max_steps=steps, batch_size=args.batch_size, lr=lr, warmup_steps=0, schedule="constant",
                      weight_decay=0.0, beta2=0.999, grad_clip=0.0, eval_interval=0, eval_batches=4,
                      seed=args.seed, device=args.device, progress=not args.quiet)
    task = LMTask(train, val, args.block_size, args.batch_size, seed=args.seed, device=args.device, eval_batches=4)
    return Trainer(model, task, cfg).fit()


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    ml.manual_seed(args.seed)
    tok = CharTokenizer.default()
    source_train, source_val = train_val_split(tok.encode(get_corpus("english").text), 0.1)
    target_train, target_val = train_val_split(tok.encode(get_corpus("alien").text), 0.1)

    cfg = GPTConfig(tok.vocab_size, args.block_size, args.n_layer, n_head=2, n_embd=args.n_embd)
    model = GPT(cfg).to(args.device)
    fit(model, source_train, source_val, args.pretrain_steps, 3e-3, args)
    before = LMTask(target_train, target_val, args.block_size, args.batch_size, device=args.device,
                    eval_batches=4).evaluate(model)["val_loss"]

    # QLoRA: quantize=True stores every Linear but lm_head as NF4, then LoRA wraps the targets
    peft = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules="all-linear",
                                            quantize=True, quant_block_size=64, double_quant=True))
    peft.print_trainable_parameters()
    storage = storage_report(peft)
    frozen = {n: backend.to_host(b).copy() for n, b in peft.named_buffers()}  # host: for the check below

    history = fit(peft, target_train, target_val, args.steps, 1e-2, args)
    quantised, after = history.val_loss[0], history.val_loss[-1]  # NF4 base before / after the LoRA steps
    unchanged = all(np.array_equal(frozen[n], backend.to_host(b)) for n, b in peft.named_buffers())  # host

    print(f"\n{storage}")
    print(f"validation loss on alien: float base {before:.3f} | NF4 base {quantised:.3f} | after QLoRA {after:.3f}")
    print(f"NF4 base weights bit-identical after training: {unchanged}")
    prompt = backend.to_device(tok.encode("the ")[None, :], args.device)
    sample = peft.generate(prompt, 60, temperature=0)
    print("greedy sample:", repr(tok.decode(backend.to_host(sample)[0])))
    assert math.isfinite(after)
    return {"before": before, "quantised": quantised, "after": after, "storage": storage, "unchanged": unchanged}


if __name__ == "__main__":
    main()
