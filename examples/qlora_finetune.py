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
from tqdm import tqdm

import minilora as ml
from minilora import backend
from minilora.data import BatchSampler, CharTokenizer, eval_windows, get_corpus, train_val_split
from minilora.nn import GPT, GPTConfig, Module
from minilora.optim import AdamW
from minilora.peft import LoraConfig, get_peft_model
from minilora.peft.qlora import storage_report


def train(model: Module, tokens: np.ndarray, steps: int, lr: float, args: argparse.Namespace, desc: str) -> None:
    """AdamW on the parameters that require grad (for QLoRA: the LoRA matrices only)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(params, lr=lr, weight_decay=0.0)
    batches = BatchSampler(tokens, args.batch_size, args.block_size, seed=args.seed, device=args.device)
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=args.quiet)
    for _ in bar:
        x, y = batches.sample()
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")  # host: progress display


def evaluate(model: Module, tokens: np.ndarray, args: argparse.Namespace) -> float:
    """Mean validation loss over the first few fixed windows."""
    model.eval()
    losses = []
    with ml.no_grad():
        for x, y in eval_windows(tokens, args.batch_size, args.block_size, max_batches=4, device=args.device):
            losses.append(model(x, y)[1].item())  # host
    return sum(losses) / len(losses)


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
    source = tok.encode(get_corpus("english").text)
    target_train, target_val = train_val_split(tok.encode(get_corpus("alien").text), 0.1)

    cfg = GPTConfig(tok.vocab_size, args.block_size, args.n_layer, n_head=2, n_embd=args.n_embd)
    model = GPT(cfg).to(args.device)
    train(model, source, args.pretrain_steps, 3e-3, args, "pre-train on english")
    before = evaluate(model, target_val, args)

    # QLoRA: quantize=True stores every Linear but lm_head as NF4, then LoRA wraps the targets
    peft = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules="all-linear",
                                            quantize=True, quant_block_size=64, double_quant=True))
    peft.print_trainable_parameters()
    storage = storage_report(peft)
    quantised = evaluate(peft, target_val, args)
    frozen = {n: backend.to_host(b).copy() for n, b in peft.named_buffers()}  # host: for the check below

    train(peft, target_train, args.steps, 1e-2, args, "QLoRA fine-tune on alien")
    after = evaluate(peft, target_val, args)
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
