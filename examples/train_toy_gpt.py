"""Train a toy GPT from Python: corpus -> tokenizer -> GPT -> Trainer -> checkpoint -> samples.

    python examples/train_toy_gpt.py                   # about a minute on 2 CPU cores
    python examples/train_toy_gpt.py --device cuda     # the same code on CuPy

The same steps as ``minilora pretrain``, spelled out: every piece is a public API you
can swap (another corpus, your own text, another optimizer, a custom loss).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import minilora as ml
from minilora.data import CharTokenizer, get_corpus, train_val_split
from minilora.nn import GPT, GPTConfig
from minilora.train import LMTask, TrainConfig, Trainer, build_model, load_checkpoint


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--corpus", default="english")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out-dir", default=os.path.join("runs", "toy_gpt"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    # 1. data: a seeded synthetic corpus, the shared character vocabulary, a held-out tail
    corpus = get_corpus(args.corpus, seed=0)
    tokenizer = CharTokenizer.default()
    train_tokens, val_tokens = train_val_split(tokenizer.encode(corpus.text), 0.1)

    # 2. model: seed first, so the initial weights are reproducible (on CPU and GPU alike)
    ml.manual_seed(1337)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=4, n_embd=args.n_embd)
    model = GPT(config)
    print(f"{model.num_parameters():,} parameters; {len(train_tokens):,} training characters of {corpus.name!r}")

    # 3. the trainer: AdamW (no decay on 1-D params), warmup + cosine, clipping, validation, checkpoints
    train_cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=3e-3, warmup_steps=min(30, args.steps),
                            eval_interval=max(1, args.steps // 4), out_dir=args.out_dir, device=args.device,
                            progress=not args.quiet)
    task = LMTask(train_tokens, val_tokens, config.block_size, train_cfg.batch_size, seed=train_cfg.seed,
                  device=args.device, eval_batches=train_cfg.eval_batches)
    history = Trainer(model, task, train_cfg, tokenizer=tokenizer).fit()
    for step, loss in zip(history.val_steps, history.val_loss):
        print(f"step {step:4d}: validation loss {loss:.4f}")

    # 4. reload the checkpoint (as `minilora generate` does) and sample
    ckpt = load_checkpoint(os.path.join(args.out_dir, "ckpt.npz"))
    reloaded = build_model(ckpt, args.device)
    prompt = ml.tensor(tokenizer.encode("The "), device=args.device).reshape(1, -1)
    sample = reloaded.generate(prompt, max_new_tokens=120, temperature=0.8, seed=0)
    text = ckpt.tokenizer().decode(sample[0])
    print("sample:", text)
    return {"history": history, "sample": text, "checkpoint": ckpt.path}


if __name__ == "__main__":
    main()
