"""Accuracy by teacher forcing equals greedy decoding; the probe times steps and traces one."""

from __future__ import annotations

import numpy as np

import minilora
from minilora import backend, nn
from minilora.data import CharTokenizer
from minilora.demo.measure import ProbedTask, answer_accuracy


def _greedy_matches(model, tok, prompt, answer):
    ids = backend.to_device(tok.encode("\n" + prompt)[None, :], model.device)
    out = backend.to_host(model.generate(ids, len(answer) + 1, temperature=0.0))
    return tok.decode(out[0, ids.shape[1]:].tolist()) == answer + "\n"


def test_teacher_forced_accuracy_is_greedy_exact_match(device):
    minilora.manual_seed(3)
    tok = CharTokenizer("\nab=")
    model = nn.GPT(nn.GPTConfig(tok.vocab_size, 16, 1, 2, 8)).to(device)
    pairs = [("ab=", "a"), ("ba=", "b"), ("aab=", "ab"), ("b=", "")]
    want = [_greedy_matches(model, tok, p, a) for p, a in pairs]
    got = [answer_accuracy(model, tok, [pair], 15, device) for pair in pairs]
    assert got == [float(w) for w in want]
    assert answer_accuracy(model, tok, pairs, 15, device, batch_size=3) == sum(want) / len(pairs)


class _Task:
    def __init__(self):
        self.n = 0

    def next_batch(self):
        self.n += 1
        return np.ones((64, 64), np.float32)

    def evaluate(self, model, max_batches=None):
        return {"val_loss": 1.0}


def test_probe_times_steps_and_traces_one():
    probe = ProbedTask(_Task(), "cpu", trace_step=1)
    for _ in range(5):
        probe.next_batch()
    probe.close()
    assert probe.traced_peak is not None and probe.traced_peak > 0
    assert len(probe.step_times) == 3  # step 1 was traced: left out of the timing
    assert probe.ms_per_step() >= 0
