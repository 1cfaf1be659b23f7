"""Turn texts that tokenize to an exact sequence length (with [CLS] and [SEP]) under the worker's
own tokenizer (workers/inference/tokenizer.py), built from real dialogue turns
(chatterbot-corpus); one in ten carries a phone number or an e-mail address, so the content
filter's masking path runs as it would on real traffic.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from workers.inference.tokenizer import ModelTokenizer

_PII = ("call me on +44 20 7946 0958 please", "write to jane.doe@example.com about it")
_FILLER = ("ok", "and", "the", "so", "yes")  # one WordPiece token each


def corpus_sentences() -> list[str]:
    """Every English turn of chatterbot-corpus, whitespace-normalised."""
    import chatterbot_corpus
    import yaml

    folder = Path(chatterbot_corpus.__file__).parent / "data" / "english"
    out: list[str] = []
    for path in sorted(folder.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for conv in doc.get("conversations", []) or []:
            out.extend(" ".join(str(t).split()) for t in conv if str(t).strip())
    return out


class TextPool:
    """``count`` distinct texts per requested length, each exactly ``length`` tokens long."""

    def __init__(self, tokenizer: ModelTokenizer | None = None, seed: int = 7) -> None:
        self.tok = tokenizer or ModelTokenizer(max_seq_len=4096)
        self.sentences = corpus_sentences()
        self.seed = seed
        self._pools: dict[int, list[str]] = {}
        self._word_tokens: dict[str, int] = {}

    def n_tokens(self, text: str) -> int:
        return int(self.tok.encode([text]).attention_mask.sum())

    def word_tokens(self, word: str) -> int:
        """WordPiece splits on whitespace first: a text's count is 2 + the sum over its words."""
        if word not in self._word_tokens:
            self._word_tokens[word] = self.n_tokens(word) - 2
        return self._word_tokens[word]

    def texts(self, length: int, count: int = 128) -> list[str]:
        if length not in self._pools:
            rng = random.Random(self.seed * 1000 + length)
            self._pools[length] = [self._one(length, rng, pii=i % 10 == 0) for i in range(count)]
        return self._pools[length]

    def _one(self, length: int, rng: random.Random, pii: bool) -> str:
        """Whole words of corpus turns up to the length, then one-token fillers to hit it."""
        if length < 8:
            raise ValueError(f"length {length} < 8: too short for a turn")
        words: list[str] = list(rng.choice(_PII).split()) if pii else []
        used = 2 + sum(self.word_tokens(w) for w in words)
        while True:
            for word in rng.choice(self.sentences).split():
                if used + self.word_tokens(word) > length:
                    return self._fill(words, length)
                words.append(word)
                used += self.word_tokens(word)

    def _fill(self, words: Sequence[str], length: int) -> str:
        words = list(words)
        while (n := self.n_tokens(" ".join(words))) < length:
            words.append(_FILLER[n % len(_FILLER)])
        text = " ".join(words)
        if self.n_tokens(text) != length:
            raise AssertionError(f"made a text of {self.n_tokens(text)} tokens, wanted {length}")
        return text
