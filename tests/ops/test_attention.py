"""F.scaled_dot_product_attention against a NumPy reference: masks, causal alignment (Tk > Tq), dropout."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import minilora as ml
from minilora import F
from minilora.gradcheck import check_grad


def sdpa_ref(q, k, v, allowed=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    d = e.sum(-1, keepdims=True)
    return (e / np.where(d == 0, 1, d)) @ v


def causal_ref(Tq, Tk):
    # written out loop by loop: query i is position i + (Tk - Tq) of the full sequence
    a = np.zeros((Tq, Tk), dtype=bool)
    for i in range(Tq):
        for j in range(Tk):
            a[i, j] = j <= i + (Tk - Tq)
    return a


def make(device, rng, B, nh, Tq, Tk, hs):
    arrays = [rng.standard_normal((B, nh, T, hs)) for T in (Tq, Tk, Tk)]
    return arrays, [ml.tensor(a, device=device, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("Tq,Tk", [(3, 3), (2, 5), (4, 4)])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_grad(device, rng, Tq, Tk, causal):
    (q, k, v), ts = make(device, rng, 2, 2, Tq, Tk, 3)
    out = F.scaled_dot_product_attention(*ts, causal=causal)
    np.testing.assert_allclose(out.numpy(), sdpa_ref(q, k, v, causal_ref(Tq, Tk) if causal else None), rtol=1e-10)
    check_grad(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=causal), ts)
    np.testing.assert_array_equal(ts[0].numpy(), q)


def test_causal_end_alignment_equals_the_tail_of_full_attention(device, rng):
    # the last Tq queries of a length-Tk causal attention == Tq queries against all Tk keys
    (q, k, v), (tq, tk, tv) = make(device, rng, 1, 2, 5, 5, 4)
    full = F.scaled_dot_product_attention(tq, tk, tv, causal=True).numpy()
    tail = F.scaled_dot_product_attention(ml.tensor(q[:, :, 3:], device=device), tk, tv, causal=True).numpy()
    np.testing.assert_allclose(tail, full[:, :, 3:], rtol=1e-12)


def test_padding_mask_and_fully_masked_rows(device, rng):
    (q, k, v), ts = make(device, rng, 2, 1, 3, 4, 2)
    allowed = rng.random((2, 1, 3, 4)) < 0.6
    allowed[0, 0, 1] = False  # a query that sees nothing
    allowed[1, 0, 2] = False
    tm = ml.tensor(allowed, device=device)
    out = F.scaled_dot_product_attention(*ts, mask=tm)
    got = out.numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, sdpa_ref(q, k, v, allowed), rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(got[0, 0, 1], 0.0)
    check_grad(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, mask=tm), ts)
    # mask and causal combine
    both = allowed & causal_ref(3, 4)
    out2 = F.scaled_dot_product_attention(*ts, mask=tm, causal=True).numpy()
    np.testing.assert_allclose(out2, sdpa_ref(q, k, v, both), rtol=1e-10, atol=1e-15)


def test_broadcast_padding_mask(device, rng):
    (q, k, v), ts = make(device, rng, 2, 2, 3, 3, 2)
    keys = np.array([[True, True, False], [True, True, True]])[:, None, None, :]  # (B, 1, 1, Tk)
    out = F.scaled_dot_product_attention(*ts, mask=ml.backend.to_device(keys, device))
    np.testing.assert_allclose(out.numpy(), sdpa_ref(q, k, v, keys), rtol=1e-10)


def test_dropout_is_reproducible_and_checked(device, rng):
    _, ts = make(device, rng, 1, 2, 3, 3, 2)

    def fn(a, b, c):
        ml.manual_seed(0)
        return F.scaled_dot_product_attention(a, b, c, causal=True, dropout_p=0.3)

    check_grad(fn, ts)
    no_drop = F.scaled_dot_product_attention(*ts, causal=True, dropout_p=0.3, training=False).numpy()
    np.testing.assert_allclose(no_drop, F.scaled_dot_product_attention(*ts, causal=True).numpy())


def test_frozen_kv_saves_less(device, rng):
    _, (tq, tk, tv) = make(device, rng, 1, 1, 2, 2, 2)
    k, v = tk.detach(), tv.detach()
    y = F.scaled_dot_product_attention(tq, k, v)
    q_saved, k_saved, v_saved = y._ctx.saved[:3]
    assert q_saved is None and k_saved is not None and v_saved is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(device, rng, dtype):
    ts = [ml.tensor(rng.standard_normal((1, 2, 3, 4)).astype(dtype), device=device, requires_grad=True)
          for _ in range(3)]
    y = F.scaled_dot_product_attention(*ts, causal=True)
    assert y.dtype == dtype
    y.backward(ml.tensor(np.ones((1, 2, 3, 4), dtype), device=device))
    assert all(t.grad.dtype == dtype for t in ts)


def test_errors(device):
    q = ml.tensor(np.ones((1, 1, 2, 4)), device=device)
    k = ml.tensor(np.ones((1, 1, 3, 5)), device=device)
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention: q \(B, nh, Tq, hs\)"):
        F.scaled_dot_product_attention(q, k, k)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        F.scaled_dot_product_attention(q, q, q, mask=ml.tensor(np.ones((2, 2)), device=device))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, mask=ml.tensor(np.ones((3, 3), bool), device=device))


@pytest.mark.parametrize("Tq,Tk", [(5, 5), (4, 7), (6, 6)])
def test_causal_query_blocks_match_the_reference(device, rng, monkeypatch, Tq, Tk):
    # a purely causal mask runs in query blocks that skip the keys after them; 2-row blocks exercise it here
    from minilora.ops import attention

    monkeypatch.setattr(attention, "BLOCK_ROWS", 2)
    assert len(attention.query_blocks(Tq, Tk, True)) > 1
    (q, k, v), ts = make(device, rng, 2, 2, Tq, Tk, 3)
    out = F.scaled_dot_product_attention(*ts, causal=True)
    np.testing.assert_allclose(out.numpy(), sdpa_ref(q, k, v, causal_ref(Tq, Tk)), rtol=1e-10)
    check_grad(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=True), ts)
    frozen_q = F.scaled_dot_product_attention(ts[0].detach(), ts[1], ts[2], causal=True)
    frozen_q.backward(ml.tensor(np.ones(frozen_q.shape), device=device))  # g_k, g_v only
    assert ts[0].grad is None and ts[1].grad is not None


# ----------------------------------------------------------------------------- grouped-query attention
def gqa_ref(q, k, v, allowed=None):
    # transformers' repeat_kv: kv head j serves query heads j * g .. j * g + g - 1
    g = q.shape[1] // k.shape[1]
    return sdpa_ref(q, np.repeat(k, g, axis=1), np.repeat(v, g, axis=1), allowed)


def make_gqa(device, rng, B, nh, nkv, Tq, Tk, hs):
    arrays = [rng.standard_normal(s) for s in ((B, nh, Tq, hs), (B, nkv, Tk, hs), (B, nkv, Tk, hs))]
    return arrays, [ml.tensor(a, device=device, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("nh,nkv", [(4, 2), (6, 1), (4, 4)])
@pytest.mark.parametrize("Tq,Tk,causal", [(3, 3, False), (3, 3, True), (2, 5, True)])
def test_grouped_query_forward_and_grad(device, rng, nh, nkv, Tq, Tk, causal):
    (q, k, v), ts = make_gqa(device, rng, 2, nh, nkv, Tq, Tk, 2)
    out = F.scaled_dot_product_attention(*ts, causal=causal)
    assert out.shape == (2, nh, Tq, 2)
    np.testing.assert_allclose(out.numpy(), gqa_ref(q, k, v, causal_ref(Tq, Tk) if causal else None), rtol=1e-10)
    check_grad(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=causal), ts)


def test_grouped_query_grad_is_the_sum_over_the_group(device, rng):
    # g_k of a shared head == the sum of the g_k of its repeated copies under multi-head attention
    (q, k, v), ts = make_gqa(device, rng, 1, 4, 2, 3, 3, 2)
    rep = [ml.tensor(np.repeat(a, 2, axis=1), device=device, requires_grad=True) for a in (k, v)]
    g_out = rng.standard_normal((1, 4, 3, 2))
    F.scaled_dot_product_attention(*ts, causal=True).backward(ml.tensor(g_out, device=device))
    F.scaled_dot_product_attention(ts[0].detach(), *rep, causal=True).backward(ml.tensor(g_out, device=device))
    for t, r in zip(ts[1:], rep):
        got, rep_grad = ml.backend.to_host(t.grad), ml.backend.to_host(r.grad)
        np.testing.assert_allclose(got, rep_grad.reshape(1, 2, 2, 3, 2).sum(2), rtol=1e-12)


def test_grouped_query_saves_no_repeated_kv(device, rng):
    _, ts = make_gqa(device, rng, 1, 4, 2, 3, 3, 2)
    y = F.scaled_dot_product_attention(*ts, causal=True)
    _, k_saved, v_saved = y._ctx.saved[:3]
    assert k_saved.shape == (1, 2, 3, 2) and v_saved.shape == (1, 2, 3, 2)


def test_grouped_query_masks(device, rng):
    (q, k, v), ts = make_gqa(device, rng, 2, 4, 2, 3, 4, 2)
    per_head = rng.random((2, 4, 3, 4)) < 0.6  # a different mask for each query head
    per_head[0, 1, 2] = False  # a fully masked row
    keys = rng.random((2, 1, 1, 4)) < 0.7  # a padding mask
    keys[..., 0] = True
    for allowed in (per_head, keys):
        tm = ml.tensor(allowed, device=device)
        got = F.scaled_dot_product_attention(*ts, mask=tm, causal=True).numpy()
        np.testing.assert_allclose(got, gqa_ref(q, k, v, allowed & causal_ref(3, 4)), rtol=1e-10, atol=1e-15)
        check_grad(lambda a, b, c, m=tm: F.scaled_dot_product_attention(a, b, c, mask=m, causal=True), ts)


@pytest.mark.parametrize("Tq,Tk", [(5, 5), (4, 7)])
def test_grouped_query_causal_blocks(device, rng, monkeypatch, Tq, Tk):
    from minilora.ops import attention

    monkeypatch.setattr(attention, "BLOCK_ROWS", 2)
    (q, k, v), ts = make_gqa(device, rng, 2, 4, 2, Tq, Tk, 3)
    out = F.scaled_dot_product_attention(*ts, causal=True)
    np.testing.assert_allclose(out.numpy(), gqa_ref(q, k, v, causal_ref(Tq, Tk)), rtol=1e-10)
    check_grad(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=True), ts)


def test_grouped_query_dropout_matches_repeated_heads(device, rng):
    # the dropout mask is drawn over (B, nh, Tq, Tk) in the same order as for repeated k and v
    (q, k, v), ts = make_gqa(device, rng, 1, 4, 2, 3, 3, 2)
    ml.manual_seed(0)
    got = F.scaled_dot_product_attention(*ts, causal=True, dropout_p=0.4).numpy()
    rep = [ml.tensor(np.repeat(a, 2, axis=1), device=device) for a in (k, v)]
    ml.manual_seed(0)
    want = F.scaled_dot_product_attention(ts[0], *rep, causal=True, dropout_p=0.4).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_grouped_query_against_torch(device):
    # torch's scaled_dot_product_attention on transformers' repeat_kv(k), repeat_kv(v), float64 (made by
    # benchmarks/make_rope_gqa.py): 8 query heads on 2 kv heads, end-aligned causal mask, left padding
    ref = np.load(pathlib.Path(__file__).parent / "fixtures" / "rope_gqa_torch.npz")
    ts = [ml.tensor(ref[f"gqa_{n}"], device=device, requires_grad=True) for n in "qkv"]
    out = F.scaled_dot_product_attention(*ts, mask=ml.tensor(ref["gqa_keys"], device=device), causal=True)
    out.backward(ml.tensor(ref["gqa_g_out"], device=device))
    np.testing.assert_allclose(out.numpy(), ref["gqa_out"], rtol=1e-9, atol=1e-12)
    for t, n in zip(ts, ("g_q", "g_k", "g_v")):
        np.testing.assert_allclose(ml.backend.to_host(t.grad), ref[f"gqa_{n}"], rtol=1e-9, atol=1e-12)


def test_grouped_query_errors(device):
    q = ml.tensor(np.ones((1, 4, 2, 2)), device=device)
    k = ml.tensor(np.ones((1, 3, 2, 2)), device=device)
    with pytest.raises(ValueError, match=r"with nkv dividing nh do not fit: got \(1, 4, 2, 2\), \(1, 3, 2, 2\)"):
        F.scaled_dot_product_attention(q, k, k)
    k2 = ml.tensor(np.ones((1, 2, 2, 2)), device=device)
    with pytest.raises(ValueError, match="do not fit"):
        F.scaled_dot_product_attention(q, k2, k)  # v's heads differ from k's


def test_causal_blocks_pooled_equal_inline(rng, monkeypatch):
    """The softmax and score-gradient passes split over threads give the same bits as one thread."""
    from minilora import parallel
    from minilora.ops import attention

    monkeypatch.setattr(attention, "BLOCK_ROWS", 2)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SIZE", 1)
    monkeypatch.setattr(parallel, "CHUNK", 8)
    (q, k, v), _ = make_gqa("cpu", rng, 3, 4, 2, 6, 6, 3)
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(parallel.ENV_VAR, threads)
        ts = [ml.tensor(a.astype(np.float32), requires_grad=True) for a in (q, k, v)]
        y = F.scaled_dot_product_attention(*ts, causal=True)
        y.backward(ml.tensor(np.ones(y.shape, np.float32)))
        out[threads] = [y.numpy()] + [t.grad for t in ts]
    for a, b in zip(out["1"], out["2"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(out["1"][0], gqa_ref(q, k, v, causal_ref(6, 6)), rtol=1e-5, atol=1e-6)
