"""Built-in synthetic corpora, generated in code from a seed: no downloads, no copied texts.

One "pre-training" corpus and several "domain" corpora for fine-tuning. All of them
fit one character vocabulary (``CharTokenizer.default()``), so a model pre-trained on
``english`` can be fine-tuned on any domain. The domains are chosen so their shift from
the pre-training text is measurable (``corpus_shift``, and a pre-trained model's loss on
them) and, for most, so the task has an exact answer that can be scored:

===============  =====================================================================
english          pre-training text: English-like sentences from a small grammar
                 (subject-verb agreement, past/present, adjectives, places, questions)
alien            an artificial language "Velsh": subject-object-verb, adjectives after
                 the noun, plural "-i" on nouns and their adjectives, verb agreement
                 "-un" with a plural subject, past-tense prefix "ta-", particle "ka."/"ki?"
arithmetic       "12+34=46" and "57-13=44" (operands 0..99, no negative results)
reverse          "reverse: lomka -> akmol" (random lowercase words, 3..8 letters)
sort             "sort: dbca -> abcd" (the letters of a random word, sorted)
sentiment        templated reviews with labels: "the plot was not dull => positive"
===============  =====================================================================

``get_corpus(name, n=..., seed=...)`` returns a ``Corpus``: its ``text`` (one example
per line) and, where the task has them, ``pairs`` (prompt, answer) for exact-match
accuracy and ``examples`` (text, label) for classification.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable

import numpy as np

# ----------------------------------------------------------------------------- the corpus type


@dataclasses.dataclass
class Corpus:
    """A generated (or loaded) corpus. ``text`` is what a language model trains on."""

    name: str
    description: str
    text: str
    pairs: list[tuple[str, str]] | None = None  # (prompt, answer): greedy-decode the answer to score accuracy
    examples: list[tuple[str, int]] | None = None  # (text, label) for sequence classification
    label_names: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        extra = f", {len(self.examples)} labelled examples" if self.examples else ""
        return f"Corpus({self.name!r}, {len(self.text):,} characters{extra})"


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


# ----------------------------------------------------------------------------- english (pre-training)
_NOUNS = {  # singular -> plural
    "dog": "dogs", "cat": "cats", "bird": "birds", "child": "children", "teacher": "teachers",
    "farmer": "farmers", "king": "kings", "girl": "girls", "boy": "boys", "man": "men", "woman": "women",
    "horse": "horses", "fox": "foxes", "friend": "friends", "doctor": "doctors", "baker": "bakers",
}
_THINGS = ("ball", "apple", "book", "box", "letter", "hat", "basket", "key", "stone", "song", "cake", "lamp")
_ADJS = ("big", "small", "old", "young", "happy", "quiet", "red", "green", "brown", "clever", "lazy", "brave", "tired")
_TRANSITIVE = {  # base (plural present), 3rd singular present, past
    "see": ("sees", "saw"), "like": ("likes", "liked"), "find": ("finds", "found"), "follow": ("follows", "followed"),
    "help": ("helps", "helped"), "watch": ("watches", "watched"), "carry": ("carries", "carried"),
    "want": ("wants", "wanted"), "bring": ("brings", "brought"),
}
_INTRANSITIVE = {
    "sleep": ("sleeps", "slept"), "run": ("runs", "ran"), "sing": ("sings", "sang"), "wait": ("waits", "waited"),
    "laugh": ("laughs", "laughed"), "walk": ("walks", "walked"), "rest": ("rests", "rested"),
}
_PLACES = ("in the garden", "near the river", "on the hill", "under the tree", "at the market", "by the road",
           "in the house", "behind the wall")
_ADVERBS = ("quickly", "slowly", "often", "today", "again", "quietly")


def _noun_phrase(rng: np.random.Generator, plural: bool) -> str:
    noun = _pick(rng, list(_NOUNS))
    if plural:
        noun = _NOUNS[noun]
    det = _pick(rng, ("the", "some", "two", "many") if plural else ("the", "a", "this", "one"))
    if rng.random() < 0.4:
        adj = _pick(rng, _ADJS)
        if det == "a" and adj[0] in "aeiou":
            det = "an"
        return f"{det} {adj} {noun}"
    return f"{det} {noun}"


def _verb(rng: np.random.Generator, table: dict[str, tuple[str, str]], plural: bool, past: bool) -> str:
    base = _pick(rng, list(table))
    return table[base][1] if past else (base if plural else table[base][0])


def _english_sentence(rng: np.random.Generator) -> str:
    plural, past = rng.random() < 0.4, rng.random() < 0.5
    subj = _noun_phrase(rng, plural)
    kind = rng.random()
    if kind < 0.45:
        thing = _pick(rng, _THINGS)
        obj = f"the {thing}" if rng.random() < 0.5 else _noun_phrase(rng, rng.random() < 0.3)
        s = f"{subj} {_verb(rng, _TRANSITIVE, plural, past)} {obj}"
    elif kind < 0.75:
        s = f"{subj} {_verb(rng, _INTRANSITIVE, plural, past)}"
        if rng.random() < 0.5:
            s += " " + _pick(rng, _ADVERBS)
    elif kind < 0.9:
        be = ("were" if plural else "was") if past else ("are" if plural else "is")
        s = f"{subj} {be} {_pick(rng, _ADJS)}"
    else:
        do = "did" if past else ("do" if plural else "does")
        verb = _pick(rng, list(_INTRANSITIVE))
        return f"{do.capitalize()} {subj} {verb} {_pick(rng, _PLACES)}?"
    if rng.random() < 0.4:
        s += " " + _pick(rng, _PLACES)
    return s[0].upper() + s[1:] + "."


def english(n: int = 4000, seed: int = 0) -> Corpus:
    """Pre-training text: ``n`` lines of 1-4 English-like sentences from a small grammar."""
    rng = np.random.default_rng(seed)
    lines = [" ".join(_english_sentence(rng) for _ in range(int(rng.integers(1, 5)))) for _ in range(n)]
    return Corpus("english", english.__doc__.splitlines()[0], "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- alien (an artificial language)
_V_NOUNS = ("tolu", "vasim", "kerna", "mobet", "saru", "piran", "lodek", "zuma", "fenir", "gowa")
_V_ADJS = ("rel", "osta", "mik", "varun", "peli", "dorn")
_V_VERBS = ("pelim", "strav", "koru", "nadel", "wemo", "yis")


def _velsh_np(rng: np.random.Generator, plural: bool) -> str:
    suffix = "i" if plural else ""
    np_ = _pick(rng, _V_NOUNS) + suffix
    if rng.random() < 0.5:
        np_ += " " + _pick(rng, _V_ADJS) + suffix  # the adjective follows its noun and agrees in number
    return np_


def alien(n: int = 4000, seed: int = 0) -> Corpus:
    """Velsh, an artificial SOV language with number agreement, tense prefix and sentence particles."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        plural = rng.random() < 0.5
        words = [_velsh_np(rng, plural)]
        if rng.random() < 0.7:
            words.append(_velsh_np(rng, rng.random() < 0.5))  # the object
        verb = _pick(rng, _V_VERBS) + ("un" if plural else "")  # agrees with the subject only
        words.append(("ta" if rng.random() < 0.4 else "") + verb)
        words.append("ki?" if rng.random() < 0.2 else "ka.")
        lines.append(" ".join(words))
    return Corpus("alien", alien.__doc__.splitlines()[0], "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- tasks with exact answers
def arithmetic(n: int = 4000, seed: int = 0) -> Corpus:
    """Additions and subtractions of numbers 0..99 written as "12+34=46" (no negative results)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        a, b = (int(v) for v in rng.integers(0, 100, size=2))
        if rng.random() < 0.5:
            pairs.append((f"{a}+{b}=", str(a + b)))
        else:
            a, b = max(a, b), min(a, b)
            pairs.append((f"{a}-{b}=", str(a - b)))
    return _from_pairs("arithmetic", arithmetic, pairs)


def _word(rng: np.random.Generator, lo: int = 3, hi: int = 8) -> str:
    return "".join(chr(97 + int(c)) for c in rng.integers(0, 26, size=int(rng.integers(lo, hi + 1))))


def reverse(n: int = 4000, seed: int = 0) -> Corpus:
    """String reversal: "reverse: lomka -> akmol" (random lowercase words of 3..8 letters)."""
    rng = np.random.default_rng(seed)
    words = [_word(rng) for _ in range(n)]
    return _from_pairs("reverse", reverse, [(f"reverse: {w} -> ", w[::-1]) for w in words])


def sort(n: int = 4000, seed: int = 0) -> Corpus:
    """Sorting letters: "sort: dbca -> abcd" (random lowercase words of 3..8 letters)."""
    rng = np.random.default_rng(seed)
    words = [_word(rng) for _ in range(n)]
    return _from_pairs("sort", sort, [(f"sort: {w} -> ", "".join(sorted(w))) for w in words])


def _from_pairs(name: str, fn: Callable[..., Corpus], pairs: list[tuple[str, str]]) -> Corpus:
    text = "".join(p + a + "\n" for p, a in pairs)
    return Corpus(name, fn.__doc__.splitlines()[0], text, pairs=pairs)


# ----------------------------------------------------------------------------- sentiment (labelled)
_S_THINGS = ("film", "plot", "acting", "music", "ending", "story", "food", "service", "book", "game")
_S_POS = ("good", "great", "superb", "wonderful", "lovely", "fun", "charming", "excellent")
_S_NEG = ("bad", "awful", "dull", "boring", "poor", "terrible", "weak", "clumsy")
_S_INTENS = ("", "", "very ", "really ", "quite ")
SENTIMENT_LABELS = ("negative", "positive")


def _clause(rng: np.random.Generator) -> tuple[str, int]:
    label = int(rng.integers(2))
    negated = rng.random() < 0.25
    adj = _pick(rng, _S_POS if label != negated else _S_NEG)  # "not bad" is positive, "not good" negative
    thing = _pick(rng, _S_THINGS)
    return f"the {thing} was {'not ' if negated else _pick(rng, _S_INTENS)}{adj}", label


def sentiment(n: int = 4000, seed: int = 0) -> Corpus:
    """Templated reviews with labels; "but" hands the verdict to the second clause; "not" flips an adjective."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(n):
        text, label = _clause(rng)
        if rng.random() < 0.3:
            second, label = _clause(rng)
            text = f"{text} but {second}"
        examples.append((text, label))
    pairs = [(f"{t} => ", SENTIMENT_LABELS[y]) for t, y in examples]
    c = _from_pairs("sentiment", sentiment, pairs)
    c.examples, c.label_names = examples, SENTIMENT_LABELS
    return c


# ----------------------------------------------------------------------------- registry
CORPORA: dict[str, Callable[..., Corpus]] = {
    "english": english,
    "alien": alien,
    "arithmetic": arithmetic,
    "reverse": reverse,
    "sort": sort,
    "sentiment": sentiment,
}
PRETRAIN_CORPUS = "english"


def list_corpora() -> dict[str, str]:
    """Name -> one-line description of every built-in corpus."""
    return {name: fn.__doc__.splitlines()[0] for name, fn in CORPORA.items()}


def get_corpus(name: str, n: int | None = None, seed: int = 0) -> Corpus:
    """Generate the built-in corpus ``name`` with ``n`` lines/examples (its default when None) from ``seed``."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; built-in corpora: {', '.join(CORPORA)}")
    return CORPORA[name](seed=seed) if n is None else CORPORA[name](n=n, seed=seed)


def load_text_corpus(path: str | os.PathLike[str]) -> Corpus:
    """A user's own UTF-8 text file as a corpus."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    if len(text) < 2:
        raise ValueError(f"{path}: the text file is empty")
    return Corpus(os.path.basename(os.fspath(path)), f"text file {path}", text)


def corpus_shift(text_a: str, text_b: str) -> float:
    """Total-variation distance between the character-bigram distributions of two texts (0 same, 1 disjoint)."""
    ca, cb = Counter(zip(text_a, text_a[1:])), Counter(zip(text_b, text_b[1:]))
    na, nb = max(1, sum(ca.values())), max(1, sum(cb.values()))
    return 0.5 * sum(abs(ca[k] / na - cb[k] / nb) for k in set(ca) | set(cb))
