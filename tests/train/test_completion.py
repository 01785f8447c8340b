"""The completion task: loss on the answer only, and accuracy that is exactly greedy decoding's."""

from __future__ import annotations

import numpy as np
import pytest

import minilora
from minilora import backend, nn
from minilora.data import CharTokenizer
from minilora.train.completion import CompletionTask, completion_batch, greedy_samples, segments_batch

TOK = CharTokenizer("\nab=")


def test_batch_targets_only_the_answer_and_its_newline():
    x, y = completion_batch(TOK, [("ab=", "ba"), ("b=", "a")], window=8)
    ids = TOK.encode("\nab=ba\n")
    np.testing.assert_array_equal(x[0], ids[:-1])
    np.testing.assert_array_equal(y[0], [-100, -100, -100, ids[4], ids[5], ids[6]])
    assert list(y[1][:3]) == [-100, -100, TOK.encode("a")[0]] and y[1][3] == TOK.encode("\n")[0]
    assert (y[1][4:] == -100).all() and (x[1][4:] == 0).all()  # right padding, ignored
    x, y = completion_batch(TOK, [("abababab=", "a")], window=4)  # cut on the left to the window
    assert x.shape == (1, 4) and list(y[0]) == [-100, -100, TOK.encode("a")[0], TOK.encode("\n")[0]]


def _greedy_matches(model, prompt, answer):
    ids = backend.to_device(TOK.encode("\n" + prompt)[None, :], model.device)
    out = backend.to_host(model.generate(ids, len(answer) + 1, temperature=0.0))
    return TOK.decode(out[0, ids.shape[1]:].tolist()) == answer + "\n"


def test_accuracy_is_greedy_exact_match(device):
    minilora.manual_seed(1)  # a seed whose untrained model gets one of these right
    model = nn.GPT(nn.GPTConfig(TOK.vocab_size, 16, 1, 2, 8)).to(device)
    pairs = [("ab=", "a"), ("ba=", "b"), ("aab=", "ab"), ("b=", ""), ("a=", "a")]
    want = [_greedy_matches(model, p, a) for p, a in pairs]
    assert any(want) and not all(want)
    for i, pair in enumerate(pairs):
        task = CompletionTask(pairs, [pair], TOK, 15, 2, device=device)
        assert task.evaluate(model)["val_accuracy"] == float(want[i])
    task = CompletionTask(pairs, pairs, TOK, 15, 2, device=device, eval_batch_size=2)
    report = task.evaluate(model)
    assert report["val_accuracy"] == pytest.approx(sum(want) / len(pairs))
    x, y = (backend.to_device(a, device) for a in completion_batch(TOK, pairs, 15))
    _, loss = model(x, y)
    assert report["val_loss"] == pytest.approx(loss.item(), rel=1e-5)  # per answer token, over every pair


def test_training_batches_are_seeded(device):
    pairs = [(f"{'ab'[i % 2]}=", "a") for i in range(10)]
    a = CompletionTask(pairs, pairs, TOK, 8, 4, seed=5, device=device)
    b = CompletionTask(pairs, pairs, TOK, 8, 4, seed=5, device=device)
    state = a.state_dict()
    first = backend.to_host(a.next_batch()[0])
    np.testing.assert_array_equal(first, backend.to_host(b.next_batch()[0]))
    a.load_state_dict(state)
    np.testing.assert_array_equal(first, backend.to_host(a.next_batch()[0]))
    with pytest.raises(ValueError, match="CompletionTask"):
        CompletionTask([], pairs, TOK, 8, 4)


def test_chat_examples_train_the_assistant_turns_only():
    from minilora.data.jsonl import chat_segments

    tok = CharTokenizer.default()
    segs = chat_segments([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                          {"role": "user", "content": "1?"}, {"role": "assistant", "content": "2"}])
    assert "".join(t for t, _ in segs) == "\nUser: hi\nAssistant: yo\nUser: 1?\nAssistant: 2\n"
    x, y = segments_batch(tok, [segs], window=64)
    text = "".join(t for t, _ in segs)
    trained = "".join(text[j + 1] for j in range(len(text) - 1) if y[0, j] != -100)
    assert trained == "yo\n2\n"


def test_greedy_samples_decode_the_last_answer(device):
    minilora.manual_seed(1)
    model = nn.GPT(nn.GPTConfig(TOK.vocab_size, 16, 1, 2, 8)).to(device)
    pairs = [("ab=", "a"), ("ba=", "b")]
    samples = greedy_samples(model, TOK, pairs, window=15, device=device)
    assert [(p, e) for p, e, _ in samples] == [("\nab=", "a"), ("\nba=", "b")]
    for (prompt, answer), (_, _, got) in zip(pairs, samples):
        assert (got == answer) == _greedy_matches(model, prompt, answer)


def test_greedy_samples_show_ids_past_the_tokenizer_as_replacement_characters(device):
    """A model vocabulary larger than the tokenizer's (Llama folders pad it): the sample is U+FFFD, not an error."""

    class PaddedVocabulary:  # generates two ids the tokenizer lacks
        def generate(self, idx, n, **kw):
            xp = backend.get_array_module(idx)
            return xp.concatenate([idx, xp.full((1, 2), TOK.vocab_size + 1, dtype=idx.dtype)], axis=1)

    (_, _, got), = greedy_samples(PaddedVocabulary(), TOK, [("ab=", "a")], window=15, device=device)
    assert got == "\ufffd\ufffd"
