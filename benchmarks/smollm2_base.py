"""Write a random-weight Llama checkpoint of SmolLM2-135M's shape, for ``minilora finetune --base`` and the docs.

    python benchmarks/smollm2_base.py runs/smollm2/ckpt.npz [--seq-len 256]

30 layers, hidden 576, intermediate 1536, 9 heads, 3 key/value heads, vocab 49,152, tied embeddings (as
HuggingFaceTB/SmolLM2-135M; random weights: nothing is downloaded). The tokenizer stored with it is the
default character one (96 characters) padded with 49,056 CJK Extension B characters to the model's
vocabulary (a checkpoint's tokenizer must match it), so the built-in corpora use a small corner of it.
``--seq-len`` sets max_position_embeddings, the window ``finetune`` trains on (rotary positions hold no
weights).
"""

from __future__ import annotations

import argparse
import os

import minilora as ml
from minilora.data import CharTokenizer
from minilora.models import build_model
from minilora.train import save_checkpoint

SMOLLM2_135M = {"family": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "tie_word_embeddings": True, "rope_theta": 100000.0, "rms_norm_eps": 1e-5}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ml.manual_seed(args.seed)
    model = build_model({**SMOLLM2_135M, "max_position_embeddings": args.seq_len})
    os.makedirs(os.path.dirname(os.path.abspath(args.path)), exist_ok=True)
    chars = CharTokenizer.default().chars
    pad = [chr(0x20000 + i) for i in range(SMOLLM2_135M["vocab_size"] - len(chars))]  # CJK ext. B: unused
    save_checkpoint(args.path, model, tokenizer=CharTokenizer(chars + pad))
    print(f"{args.path}: {model.num_parameters():,} parameters")


if __name__ == "__main__":
    main()
