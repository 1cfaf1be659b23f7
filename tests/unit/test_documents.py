"""Document chunking at the sequence limit with overlap, and entity merging across chunks."""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest

from workers.documents import Chunk, DocumentTokenizer, chunk, extract_entities, merge_entities
from workers.errors import InferenceRejected
from workers.inference.entities import Entity
from workers.inference.tokenizer import ModelTokenizer


@pytest.fixture(scope="module")
def tok() -> DocumentTokenizer:
    return DocumentTokenizer()


@pytest.fixture(scope="module")
def encoder() -> ModelTokenizer:
    return ModelTokenizer(max_seq_len=256)


WORDS = [
    "the", "patient", "reported", "chest", "pain", "after", "the", "appointment", ",",
    "billing", "disputed", "antidisestablishmentarianism", "naïve", "café", "東京", "résumé",
    "co-operation", ";",
]  # fmt: skip


def document(n_chars: int, seed: int = 0, phones: float = 0.0) -> str:
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        if rng.random() < phones:
            word = "-".join(str(rng.randint(1, 999)) for _ in range(rng.randint(1, 12)))
        else:
            word = rng.choice(WORDS)
        parts.append(word)
        size += len(word) + 1
        if rng.random() < 0.05:
            parts.append("\n\n")
    return " ".join(parts)[:n_chars]


def check_cover(text: str, chunks: list[Chunk]) -> None:
    assert chunks[0].start_char == 0 and chunks[-1].end_char == len(text)
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.start_char <= prev.end_char  # no gap: every character is in some chunk
        assert prev.token_start < nxt.token_start  # progress
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True]


def test_100k_character_document_chunks_fast_and_fully(
    tok: DocumentTokenizer, encoder: ModelTokenizer
) -> None:
    text = document(100_000, seed=1, phones=0.02)
    started = time.perf_counter()
    chunks = chunk(text, tok, max_tokens=256, overlap_tokens=32)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"chunking took {elapsed:.2f}s"
    assert len(text) == 100_000 and len(chunks) > 50
    check_cover(text, chunks)
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.token_end - nxt.token_start >= 32  # overlap as configured (or more)
    # each chunk's text is exactly its tokens for the model: never truncated at 256
    enc = encoder.encode([c.text(text) for c in chunks])
    lengths = enc.attention_mask.sum(axis=1)
    assert not any(enc.truncated) and lengths.max() <= 256
    assert list(lengths) == [c.token_end - c.token_start + 2 for c in chunks]
    # the chunk-relative offsets land on the same characters as the document's tokens
    doc = tok.spans(text).offsets
    for c, offs in zip(chunks, enc.offsets, strict=True):
        inner = [(a + c.start_char, b + c.start_char) for a, b in offs[1:-1]]
        assert inner == [tuple(x) for x in doc[c.token_start : c.token_end].tolist()]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 0), (16, 5), (32, 8), (256, 0)])
def test_chunks_cover_and_overlap_exactly_when_words_are_short(
    tok: DocumentTokenizer, max_tokens: int, overlap: int
) -> None:
    text = " ".join(f"w{i % 10}" if i % 3 else "a" for i in range(3000))  # 1-2 token words
    chunks = chunk(text, tok, max_tokens=max_tokens, overlap_tokens=overlap)
    check_cover(text, chunks)
    for c in chunks:
        assert 0 < c.token_end - c.token_start <= max_tokens - 2
    for prev, nxt in itertools.pairwise(chunks):
        assert overlap <= prev.token_end - nxt.token_start <= overlap + 1  # +1: word snapping


def test_words_are_not_split_unless_longer_than_a_chunk(tok: DocumentTokenizer) -> None:
    text = " ".join(["antidisestablishmentarianism"] * 200)  # 8 word pieces each
    spans = tok.spans(text)
    chunks = chunk(text, tok, max_tokens=30, overlap_tokens=4)
    check_cover(text, chunks)
    word_of = spans.word_ids.tolist()
    for c in chunks:
        assert c.token_start == 0 or word_of[c.token_start - 1] != word_of[c.token_start]
        assert c.token_end == len(word_of) or word_of[c.token_end - 1] != word_of[c.token_end]
    giant = "x" + "-" * 0 + "ab" * 400  # one word of ~hundreds of pieces
    chunks = chunk(giant, tok, max_tokens=20, overlap_tokens=3)
    check_cover(giant, chunks)
    assert all(c.token_end - c.token_start <= 18 for c in chunks)


def test_short_empty_and_blank_documents(tok: DocumentTokenizer) -> None:
    assert chunk("hello world", tok) == [Chunk(0, 0, 11, 0, 3, 0, 11, True)]  # ▁hell o ▁world
    assert chunk("", tok) == [Chunk(0, 0, 0, 0, 0, 0, 0, True)]
    assert chunk("  \n ", tok)[0].end_char == 4


@pytest.mark.parametrize(("max_tokens", "overlap"), [(2, 0), (10, 8), (10, -1)])
def test_bad_chunk_settings(tok: DocumentTokenizer, max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk("text", tok, max_tokens=max_tokens, overlap_tokens=overlap)


# A stand-in for the token-classification model: every run of digits and hyphens is a PHONE,
# found with the same semantics on a chunk as on the whole text, so merging must reproduce the
# whole-text answer whatever the cuts.
PHONE = re.compile(r"[\d-]*\d[\d-]*")


def recognise_phones(text: str, confidence: float = 0.9) -> list[Entity]:
    return [Entity("PHONE", m.start(), m.end(), confidence) for m in PHONE.finditer(text)]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(12, 0), (12, 3), (24, 8), (64, 16)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merge_reproduces_whole_document_entities(
    tok: DocumentTokenizer, max_tokens: int, overlap: int, seed: int
) -> None:
    # many numbers, some longer than a chunk; not ending in "-", which the fake model (unlike a
    # token tagger) could not see as part of a number in a chunk of its own
    text = document(4_000, seed=seed, phones=0.15).rstrip("-")
    chunks = chunk(text, tok, max_tokens=max_tokens, overlap_tokens=overlap)
    per_chunk = [(c, recognise_phones(c.text(text), 0.5 + c.index % 3 / 10)) for c in chunks]
    merged = merge_entities(per_chunk, join_gap=0)  # the fake model splits at spaces
    expected = [(e.start, e.end) for e in recognise_phones(text)]
    assert [(e.start, e.end) for e in merged] == expected
    assert all(e.type == "PHONE" and 0.5 <= e.confidence <= 0.7 for e in merged)


def test_entity_in_an_overlap_is_reported_once_with_the_higher_confidence() -> None:
    text = "aaaa call 555-0100 now bbbb"
    #      chunk 0 = [0, 22), chunk 1 = [5, 27): "call 555-0100 now" is in both
    first = Chunk(0, 0, 23, 0, 6, 0, 22, False)
    second = Chunk(1, 5, 27, 2, 8, 5, 27, True)
    merged = merge_entities(
        [
            (first, [Entity("PHONE", 10, 18, 0.7)]),
            (second, [Entity("PHONE", 5, 13, 0.95), Entity("PERSON", 18, 22, 0.8)]),
        ]
    )
    assert [(e.type, text[e.start : e.end], e.confidence) for e in merged] == [
        ("PHONE", "555-0100", 0.95),
        ("PERSON", "bbbb", 0.8),
    ]


def test_span_seen_whole_beats_a_clipped_one_and_split_spans_join() -> None:
    text = "dr john smith called"
    a = Chunk(0, 0, 8, 0, 2, 0, 7, False)  # "dr john" | cut
    b = Chunk(1, 0, 20, 0, 4, 0, 20, True)  # "dr john smith called"
    clipped = merge_entities(
        [(a, [Entity("PERSON", 3, 7, 0.99)]), (b, [Entity("PERSON", 3, 13, 0.6)])]
    )
    assert [(text[e.start : e.end], e.confidence) for e in clipped] == [("john smith", 0.6)]
    # no overlap: "john" ends chunk a, "smith" starts chunk c -> one PERSON "john smith"
    c = Chunk(1, 8, 20, 2, 4, 8, 20, True)
    joined = merge_entities(
        [(a, [Entity("PERSON", 3, 7, 0.8)]), (c, [Entity("PERSON", 0, 5, 0.9)])]
    )
    assert [(text[e.start : e.end], e.type) for e in joined] == [("john smith", "PERSON")]
    assert joined[0].confidence == pytest.approx((0.8 * 4 + 0.9 * 5) / 9)
    # different types never join
    apart = merge_entities([(a, [Entity("PERSON", 3, 7, 0.8)]), (c, [Entity("ORG", 0, 5, 0.9)])])
    assert [e.type for e in apart] == ["PERSON", "ORG"]


async def test_extract_entities_end_to_end_on_a_long_document(tok: DocumentTokenizer) -> None:
    text = document(100_000, seed=5, phones=0.03)
    calls: list[int] = []

    async def recognise(texts: list[str]) -> list[list[Entity]]:
        calls.append(len(texts))
        return [recognise_phones(t) for t in texts]

    found = await extract_entities(text, tok, recognise, max_tokens=256, overlap_tokens=32)
    assert [(e.start, e.end) for e in found] == [(e.start, e.end) for e in recognise_phones(text)]
    assert len(calls) == 1

    async def wrong(texts: list[str]) -> list[list[Entity]]:
        return []

    with pytest.raises(InferenceRejected):
        await extract_entities(text, tok, wrong)
