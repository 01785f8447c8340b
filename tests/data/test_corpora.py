"""Built-in corpora: deterministic, one shared vocabulary, measurable shift, correct task answers."""

from __future__ import annotations

import pytest

from minilora.data import CORPORA, CharTokenizer, corpus_shift, get_corpus, list_corpora, load_text_corpus

SMALL = 300


@pytest.mark.parametrize("name", list(CORPORA))
def test_deterministic_and_in_shared_vocabulary(name):
    a, b = get_corpus(name, n=SMALL, seed=3), get_corpus(name, n=SMALL, seed=3)
    assert a.text == b.text and a.text != get_corpus(name, n=SMALL, seed=4).text
    tok = CharTokenizer.default()
    assert tok.decode(tok.encode(a.text)) == a.text  # every corpus fits the one vocabulary
    assert name in list_corpora() and list_corpora()[name]


@pytest.mark.parametrize("name", [n for n in CORPORA if n != "english"])
def test_domains_shift_from_pretraining(name):
    base = get_corpus("english", n=SMALL, seed=0).text
    same = corpus_shift(base, get_corpus("english", n=SMALL, seed=1).text)
    shift = corpus_shift(base, get_corpus(name, n=SMALL, seed=0).text)
    assert same < 0.1 and shift > 0.4, (same, shift)


def test_task_answers_are_correct():
    for prompt, answer in get_corpus("arithmetic", n=SMALL).pairs:
        assert eval(prompt[:-1]) == int(answer)  # noqa: S307 (our own generated digits)
    for prompt, answer in get_corpus("reverse", n=SMALL).pairs:
        assert prompt.split(": ")[1].split(" ->")[0][::-1] == answer
    for prompt, answer in get_corpus("sort", n=SMALL).pairs:
        assert "".join(sorted(prompt.split(": ")[1].split(" ->")[0])) == answer


def test_sentiment_labels():
    c = get_corpus("sentiment", n=SMALL)
    assert len(c.examples) == SMALL and c.label_names == ("negative", "positive")
    labels = {y for _, y in c.examples}
    assert labels == {0, 1}
    for text, y in c.examples:
        last = text.split(" but ")[-1]
        positive_word = any(w in last.split() for w in ("good", "great", "superb", "wonderful", "lovely", "fun",
                                                         "charming", "excellent"))
        assert y == (positive_word != (" not " in f" {last} "))


def test_unknown_corpus_and_user_file(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'klingon'; built-in corpora: english"):
        get_corpus("klingon")
    path = tmp_path / "mine.txt"
    path.write_text("my own text\n" * 10)
    assert load_text_corpus(path).text.startswith("my own text")
