"""GPTForSequenceClassification: backbone names, from_gpt, last real token, gradcheck, errors."""

from __future__ import annotations

import numpy as np
import pytest

import minilora as ml
from minilora import backend
from minilora.nn import GPT, GPTConfig, GPTForSequenceClassification
from minilora.nn.gradcheck import check_module_grad

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def _ids(a, device):
    return backend.to_device(np.array(a), device)


def test_from_gpt_copies_the_backbone(device):
    ml.manual_seed(0)
    gpt = GPT(CFG).to(device)
    clf = GPTForSequenceClassification.from_gpt(gpt, 3)
    assert clf.device == device and clf.score.weight.shape == (3, 8)
    names = [n for n, _ in clf.named_parameters()]
    assert names[-1] == "score.weight" and names[0] == "transformer.wte.weight"
    for n, p in gpt.named_parameters():
        q = clf.get_submodule(n.rpartition(".")[0])._parameters[n.rpartition(".")[2]]
        assert q is not p
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=n)
    # a GPT checkpoint loads into the classifier, minus the heads
    res = GPTForSequenceClassification(CFG, 3).load_state_dict(gpt.state_dict(), strict=False)
    assert res.missing_keys == ["score.weight"] and res.unexpected_keys == ["lm_head.weight"]


def test_scores_the_last_real_token(device):
    ml.manual_seed(0)
    clf = GPTForSequenceClassification(CFG, 3).to(device)
    x = [[3, 4, 5, 0, 0], [0, 0, 3, 4, 5], [1, 3, 4, 5, 2]]
    mask = [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    logits, loss = clf(_ids(x, device), attention_mask=_ids(mask, device))
    assert logits.shape == (3, 3) and loss is None
    alone = clf(_ids([[3, 4, 5]], device))[0].numpy()
    np.testing.assert_allclose(logits.numpy()[0], alone[0], rtol=1e-5, atol=1e-7)  # right padding ignored
    last = clf(_ids(x, device))[0].numpy()
    np.testing.assert_allclose(logits.numpy()[2], last[2], rtol=1e-6)  # no padding: the last position
    x[1][:2] = [7, 9]  # left padding: what sits under the padding changes nothing
    again = clf(_ids(x, device), attention_mask=_ids(mask, device))[0].numpy()
    np.testing.assert_array_equal(again[1], logits.numpy()[1])


def test_gradcheck_with_padding_and_hooks(device, rng):
    ml.manual_seed(0)
    clf = GPTForSequenceClassification(CFG, 3).to(device).double()
    x = _ids(rng.integers(0, 11, (2, 4)), device)
    mask = _ids([[1, 1, 0, 0], [1, 1, 1, 1]], device)
    labels = _ids([2, 0], device)
    check_module_grad(clf, lambda: clf(x, labels, attention_mask=mask)[1], full_max=24, n_directions=2)
    prompt = ml.tensor(rng.standard_normal((2, 8)), device=device, requires_grad=True)
    clf.requires_grad_(False)
    check_module_grad(clf, lambda p: clf(x, labels, attention_mask=mask, prompt_embeds=p)[1], [prompt])


def test_errors(device):
    clf = GPTForSequenceClassification(CFG, 2).to(device)
    with pytest.raises(ValueError, match=r"labels must be \(2,\)"):
        clf(_ids([[1, 2], [3, 4]], device), _ids([[0], [1]], device))
    with pytest.raises(IndexError, match="GPTForSequenceClassification: token id 12"):
        clf(_ids([[1, 12]], device))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        GPTForSequenceClassification(CFG, 0)
