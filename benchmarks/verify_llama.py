"""Verify minilora's Llama and Qwen2 against transformers (and PEFT), and write the small CI fixtures.

Run in the reference environment (PyTorch, transformers, peft; never minilora's dependencies):

    PYTHONPATH=$PWD /tmp/ref-venv/bin/python benchmarks/verify_llama.py            # the checks, printed
    PYTHONPATH=$PWD /tmp/ref-venv/bin/python benchmarks/verify_llama.py --fixtures tests/hf/fixtures

For each of LlamaForCausalLM and Qwen2ForCausalLM (2 layers, 4 heads, 2 key/value heads,
vocab 100, random weights): transformers' save_pretrained -> minilora.hf.from_pretrained,
then logits, loss and every parameter gradient compared in float64 and float32, greedy
generation with and without the KV cache (also on a left-padded batch, where transformers' generate
derives position_ids from the mask and so does minilora's), minilora's save_pretrained read back by
transformers, and a LoRA adapter exchanged with PEFT in both directions (Llama).

In float64 transformers' rotary embedding and RMSNorm are patched to compute in float64
(both force float32 internally, ~5e-8 away from exact), so the comparison checks the
math at 1e-9; in float32 transformers runs unpatched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers.models.llama import modeling_llama
from transformers.models.qwen2 import modeling_qwen2

import minilora as ml
from minilora import backend

SHAPE = {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64, "rope_theta": 10000.0}


def hf_model(kind: str, seed: int = 0, **over: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**{**SHAPE, **over})
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(**{**SHAPE, "tie_word_embeddings": True, **over})
        model = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # norms and biases away from their init values, so that a swapped tensor shows
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def exact_rope_forward(self, x, position_ids):  # noqa: ANN001, ANN201
    """transformers' rotary forward with float64 angles (the float64 comparison's reference)."""
    d = self.inv_freq.shape[0] * 2
    inv = 1.0 / SHAPE["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    freqs = position_ids[..., None].double() * inv.to(x.device)  # (B, T, d/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def exact_rms_forward(self, h):  # noqa: ANN001, ANN201
    """transformers' RMSNorm without the cast to float32 (the float64 comparison's reference)."""
    return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


@contextlib.contextmanager
def float64_reference():  # noqa: ANN201
    """Patch transformers' float32-forced RoPE angles and RMSNorm statistics to compute in float64."""
    patches = [(c, exact_rope_forward) for c in (modeling_llama.LlamaRotaryEmbedding,
                                                modeling_qwen2.Qwen2RotaryEmbedding)]
    patches += [(c, exact_rms_forward) for c in (modeling_llama.LlamaRMSNorm, modeling_qwen2.Qwen2RMSNorm)]
    saved = [c.forward for c, _ in patches]
    for c, f in patches:
        c.forward = f
    try:
        yield
    finally:
        for (c, _), f in zip(patches, saved):
            c.forward = f


def batch(seed: int = 1, B: int = 2, T: int = 12) -> tuple[np.ndarray, np.ndarray]:
    ids = np.random.default_rng(seed).integers(0, SHAPE["vocab_size"], (B, T))
    targets = np.concatenate([ids[:, 1:], np.full((B, 1), -100)], axis=1)  # transformers shifts labels itself
    return ids, targets


def compare(kind: str, folder: Path, dtype: torch.dtype) -> dict[str, float]:
    """Max |difference| of logits, loss and gradients between transformers and minilora at ``dtype``."""
    ref = hf_model(kind)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    ref = ref.to(dtype)
    ours = ml.hf.from_pretrained(folder, dtype=np_dtype)
    ids, targets = batch()
    out = ref(torch.tensor(ids))  # the loss in the model's dtype (transformers' own loss casts logits to float32)
    V = out.logits.shape[-1]
    shifted = torch.tensor(ids[:, 1:]).reshape(-1)
    out.loss = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, V), shifted)
    out.loss.backward()
    logits, loss = ours(ids, targets)
    loss.backward()
    grads = dict(ours.named_parameters())
    g_diff = 0.0
    for name, p in ref.named_parameters():
        mine = grads[name] if name in grads else grads["model.embed_tokens.weight"]  # a tied head: one parameter
        g_diff = max(g_diff, float(np.abs(backend.to_host(mine.grad) - p.grad.double().numpy()).max()))
    return {
        "logits": float(np.abs(logits.numpy() - out.logits.detach().double().numpy()).max()),
        "loss": abs(float(loss.item()) - float(out.loss.item())),
        "grads": g_diff,
        "logit_scale": float(np.abs(out.logits.detach().double().numpy()).max()),
    }


def generation(kind: str, folder: Path) -> dict[str, bool]:
    ref = hf_model(kind)
    ours = ml.hf.from_pretrained(folder)
    ids, _ = batch(T=5)
    want = ref.generate(torch.tensor(ids), max_new_tokens=12, do_sample=False, use_cache=True,
                        attention_mask=torch.ones_like(torch.tensor(ids)), pad_token_id=0).numpy()
    nocache = ref.generate(torch.tensor(ids), max_new_tokens=12, do_sample=False, use_cache=False,
                           attention_mask=torch.ones_like(torch.tensor(ids)), pad_token_id=0).numpy()
    a = ours.generate(ids, 12, do_sample=False)
    b = ours.generate(ids, 12, do_sample=False, use_cache=False)
    return {"hf cache == hf no cache": bool((want == nocache).all()), "minilora cache == hf": bool((a == want).all()),
            "minilora no cache == hf": bool((b == want).all())}


def left_padded(seed: int = 3, B: int = 3, T: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A batch whose rows are left-padded with id 0 by 0, 2 and 4 positions, and its padding mask."""
    ids = np.random.default_rng(seed).integers(1, SHAPE["vocab_size"], (B, T))
    mask = np.ones_like(ids)
    for row, n in enumerate((0, 2, 4)[:B]):
        ids[row, :n], mask[row, :n] = 0, 0
    return ids, mask


def padded(kind: str, folder: Path) -> dict[str, float | bool]:
    """Left padding: forward (positions 0, 1, ... as transformers' forward; or position_ids from the mask) and
    greedy generation (transformers' generate derives position_ids from the mask; so does minilora's)."""
    ref = hf_model(kind)
    ours = ml.hf.from_pretrained(folder)
    ids, mask = left_padded()
    real = mask.astype(bool)
    t_ids, t_mask = torch.tensor(ids), torch.tensor(mask)
    t_pos = torch.tensor(backend.to_host(ml.nn.mask_positions(mask)))
    with torch.no_grad():
        plain = ref(t_ids, attention_mask=t_mask).logits.double().numpy()
        from_mask = ref(t_ids, attention_mask=t_mask, position_ids=t_pos).logits.double().numpy()
    a, _ = ours(ids, attention_mask=mask)
    b, _ = ours(ids, attention_mask=mask, position_ids=ml.nn.mask_positions(mask))
    want = ref.generate(t_ids, attention_mask=t_mask, max_new_tokens=12, do_sample=False, pad_token_id=0).numpy()
    return {
        "forward, plain positions: max |logit diff| on real tokens": float(np.abs(a.numpy() - plain)[real].max()),
        "forward, position_ids from the mask": float(np.abs(b.numpy() - from_mask)[real].max()),
        "generate with cache == hf": bool((ours.generate(ids, 12, do_sample=False, attention_mask=mask) == want).all()),
        "generate without cache == hf": bool((ours.generate(ids, 12, do_sample=False, attention_mask=mask,
                                                            use_cache=False) == want).all()),
    }


def round_trip(kind: str, folder: Path, tmp: Path) -> float:
    """minilora's save_pretrained, loaded by transformers: max |logit difference| to the original."""
    ours = ml.hf.from_pretrained(folder)
    out_dir = tmp / f"{kind}-minilora"
    ours.save_pretrained(out_dir)
    back = transformers.AutoModelForCausalLM.from_pretrained(out_dir).eval()
    ref = hf_model(kind)
    ids, _ = batch()
    with torch.no_grad():
        return float((back(torch.tensor(ids)).logits - ref(torch.tensor(ids)).logits).abs().max())


def peft_exchange(folder: Path, tmp: Path) -> dict[str, float]:
    """A LoRA adapter trained a little in each framework, loaded by the other: max |logit difference|."""
    import peft  # noqa: PLC0415

    ids, targets = batch()
    # PEFT -> minilora
    ref = hf_model("llama")
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    pm = peft.get_peft_model(ref, cfg).eval()
    pm.save_pretrained(tmp / "peft-adapter")
    with torch.no_grad():
        want = pm(torch.tensor(ids)).logits.numpy()
    base = ml.hf.from_pretrained(folder)
    mine = ml.peft.load_adapter(base, tmp / "peft-adapter")
    got = mine(ids)[0].numpy()
    to_minilora = float(np.abs(got - want).max())
    # minilora -> PEFT
    base = ml.hf.from_pretrained(folder)
    mp = ml.peft.get_peft_model(base, ml.peft.LoraConfig(r=4, lora_alpha=8))  # the family's default targets
    for name, p in mp.named_parameters():
        if "lora_B" in name:
            p.data = np.random.default_rng(3).normal(0, 0.1, p.shape).astype(np.float32)
    mp.save_adapter(tmp / "minilora-adapter", format="peft")
    got = mp(ids)[0].numpy()
    back = peft.PeftModel.from_pretrained(hf_model("llama"), tmp / "minilora-adapter").eval()
    with torch.no_grad():
        want = back(torch.tensor(ids)).logits.numpy()
    return {"peft -> minilora": to_minilora, "minilora -> peft": float(np.abs(got - want).max()),
            "adapter targets": json.loads((tmp / "minilora-adapter" / "adapter_config.json").read_text())[
                "target_modules"]}


def tiny_tokenizer():  # noqa: ANN201
    """A character-level BPE of 60 tokens (the fixtures' vocabulary is 100), through the tokenizers library."""
    import tokenizers as tk  # noqa: PLC0415

    tok = tk.Tokenizer(tk.models.BPE(unk_token="?"))
    tok.decoder = tk.decoders.Fuse()
    text = ["the quick brown fox jumps over the lazy dog 0123456789 +-=?"] * 20
    tok.train_from_iterator(text, tk.trainers.BpeTrainer(vocab_size=60, special_tokens=["?"]))
    return tok


def write_padded_fixtures(out: Path) -> None:
    """transformers' logits (plain positions; position_ids from the mask) and greedy tokens on a left-padded batch
    for the fixture folders: {kind}_padded_expected.npz."""
    for kind in ("llama", "qwen2"):
        ref = transformers.AutoModelForCausalLM.from_pretrained(out / kind, dtype=torch.float32).eval()
        ids, mask = left_padded()
        t_ids, t_mask = torch.tensor(ids), torch.tensor(mask)
        pos = t_mask.long().cumsum(-1) - 1  # what transformers' generate derives
        pos = pos.masked_fill(t_mask == 0, 0)
        with torch.no_grad():
            plain = ref(t_ids, attention_mask=t_mask).logits.numpy()
            from_mask = ref(t_ids, attention_mask=t_mask, position_ids=pos).logits.numpy()
        greedy = ref.generate(t_ids, attention_mask=t_mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
        real = mask.astype(bool)  # the logits of real tokens only (N, V): padded rows' are never read
        np.savez(out / f"{kind}_padded_expected.npz", ids=ids, mask=mask, positions=pos.numpy(), logits=plain[real],
                 logits_mask_positions=from_mask[real], greedy=greedy.numpy())


def write_fixtures(out: Path) -> None:
    """Small folders (bf16 single file for Llama, f16 two shards for Qwen2) + transformers' float32 logits."""
    out.mkdir(parents=True, exist_ok=True)
    small = {"hidden_size": 16, "intermediate_size": 32, "max_position_embeddings": 32}
    for kind, dtype, shard in (("llama", torch.bfloat16, None), ("qwen2", torch.float16, "8KB")):
        model = hf_model(kind, seed=5, **small).to(dtype)
        kw = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(out / kind, **kw)
        for extra in ("generation_config.json",):
            (out / kind / extra).unlink(missing_ok=True)
        ref = transformers.AutoModelForCausalLM.from_pretrained(out / kind, dtype=torch.float32).eval()
        ids, _ = batch(T=8)
        with torch.no_grad():
            out_ = ref(torch.tensor(ids), labels=torch.tensor(ids))
        greedy = ref.generate(torch.tensor(ids), max_new_tokens=6, do_sample=False, pad_token_id=0,
                              attention_mask=torch.ones_like(torch.tensor(ids))).numpy()
        np.savez(out / f"{kind}_expected.npz", ids=ids, logits=out_.logits.numpy(), loss=out_.loss.numpy(),
                 greedy=greedy)
        print(f"fixture {out / kind}: {sum(f.stat().st_size for f in (out / kind).iterdir()):,} bytes")
    write_padded_fixtures(out)
    tiny_tokenizer().save(str(out / "llama" / "tokenizer.json"))  # so the command line can run on the folder
    # a LoRA adapter written by PEFT on the Llama fixture, and the adapted model's logits
    import peft  # noqa: PLC0415

    ref = transformers.AutoModelForCausalLM.from_pretrained(out / "llama", dtype=torch.float32).eval()
    torch.manual_seed(7)
    cfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    pm = peft.get_peft_model(ref, cfg).eval()
    pm.save_pretrained(out / "llama_peft_lora")
    (out / "llama_peft_lora" / "README.md").unlink(missing_ok=True)
    ids, _ = batch(T=8)
    with torch.no_grad():
        np.savez(out / "llama_peft_lora_expected.npz", ids=ids, logits=pm(torch.tensor(ids)).logits.numpy())
    print(f"fixture {out / 'llama_peft_lora'}: "
          f"{sum(f.stat().st_size for f in (out / 'llama_peft_lora').iterdir()):,} bytes")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, help="write the CI fixtures into this folder and stop")
    args = ap.parse_args()
    if args.fixtures:
        write_fixtures(args.fixtures)
        return 0
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    ok = True
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in ("llama", "qwen2"):
            folder = tmp / kind
            hf_model(kind).save_pretrained(folder)
            for dtype, tol in ((torch.float32, 2e-4), (torch.float64, 1e-9)):
                with float64_reference() if dtype == torch.float64 else contextlib.nullcontext():
                    r = compare(kind, folder, dtype)
                good = max(r["logits"], r["loss"], r["grads"]) <= tol
                ok &= good
                print(f"{kind} {str(dtype)[6:]}: max |diff| logits {r['logits']:.2e}, loss {r['loss']:.2e}, "
                      f"gradients {r['grads']:.2e} (tolerance {tol:g}; |logits| up to {r['logit_scale']:.2f}) "
                      f"{'OK' if good else 'FAIL'}")
            g = generation(kind, folder)
            ok &= all(g.values())
            print(f"{kind} greedy generation, 12 tokens: {g}")
            lp = padded(kind, folder)
            ok &= all(v <= 2e-4 if isinstance(v, float) else v for v in lp.values())
            print(f"{kind} left-padded batch (pads 0, 2, 4): {lp}")
            rt = round_trip(kind, folder, tmp)
            ok &= rt <= 1e-5
            print(f"{kind} minilora save_pretrained -> transformers: max |logit diff| {rt:.2e}")
        try:
            px = peft_exchange(tmp / "llama", tmp)
            print(f"llama LoRA exchange with PEFT {__import__('peft').__version__}: {px}")
            ok &= px["peft -> minilora"] <= 2e-4 and px["minilora -> peft"] <= 2e-4
        except Exception as exc:  # noqa: BLE001  (reported, and counted as a failure)
            print(f"llama LoRA exchange with PEFT: FAILED ({type(exc).__name__}: {exc})")
            ok = False
    print("ALL OK" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
