"""Long documents: chunk at the model's sequence limit with overlap, extract entities per chunk,
merge them back into one list with offsets into the original text.

The document is tokenized once (fast Rust tokenizer, character offsets). Chunks hold at most
``max_tokens - 2`` content tokens ([CLS] and [SEP] take the other two), start at word boundaries
(a word is never split unless it alone is longer than a chunk), and overlap the previous chunk by
at least ``overlap_tokens`` tokens. Chunk ``i`` covers ``text[start_char:end_char]``: from its first
token (0 for the first chunk) up to the token after its last one (``len(text)`` for the last
chunk), so every character of the document lies in some chunk, and the chunk's text tokenizes back
to exactly its tokens (plus the two special ones): the model never truncates it.

Merging (``merge_entities``): chunk-relative offsets are shifted by the chunk's ``start_char``. A
span that starts at a (non-first) chunk's first token or ends at a (non-last) chunk's last token is
*clipped* on that side: the cut may have truncated it. Two same-type spans from different chunks
are one entity, and are joined (their union), when every side where they differ is a clipped side
of the shorter one, or when they do not overlap but meet across a cut (the left one clipped right,
the right one clipped left, at most ``join_gap`` characters apart). Identical spans keep the higher
confidence; a union equal to one span keeps that span's; other unions take the length-weighted
mean. Any other overlap keeps one span: the less clipped, then the more confident, then the longer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from workers.errors import InferenceRejected
from workers.inference.entities import Entity
from workers.inference.tokenizer import clean_offsets, default_tokenizer_path, load

SPECIAL_TOKENS = 2  # <s> ... </s> ([CLS] ... [SEP])


@dataclass(frozen=True, slots=True)
class TokenSpans:
    offsets: npt.NDArray[np.int64]  # [n, 2] character span of each token
    word_ids: npt.NDArray[np.int64]  # [n] pre-token (word) index of each token


class SpanTokenizer(Protocol):
    def spans(self, text: str) -> TokenSpans: ...


class DocumentTokenizer:
    """The serving tokenizer without truncation or special tokens, for whole documents."""

    def __init__(self, path: Path | None = None) -> None:
        self._tok = load(path or default_tokenizer_path())  # truncation and padding off

    def spans(self, text: str) -> TokenSpans:
        enc = self._tok.encode(text, add_special_tokens=False)
        clean = clean_offsets(text, enc.tokens, enc.offsets)
        offsets = np.asarray(clean, dtype=np.int64).reshape(-1, 2)
        words = np.fromiter(
            (-1 if w is None else w for w in enc.word_ids), dtype=np.int64, count=len(enc.ids)
        )
        return TokenSpans(offsets, words)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    start_char: int  # the chunk's text is document[start_char:end_char]
    end_char: int
    token_start: int  # document token range [token_start, token_end)
    token_end: int
    content_start: int  # first character of the first token
    content_end: int  # last character (exclusive) of the last token
    is_last: bool

    def text(self, document: str) -> str:
        """The chunk's text without trailing white space (SentencePiece would make a token of
        it); offsets into it are offsets from ``start_char``."""
        return document[self.start_char : self.end_char].rstrip()


def chunk(
    text: str, tokenizer: SpanTokenizer, max_tokens: int = 256, overlap_tokens: int = 32
) -> list[Chunk]:
    """Chunks of at most ``max_tokens`` tokens including [CLS]/[SEP]; see the module doc."""
    room = max_tokens - SPECIAL_TOKENS
    if room < 1 or not 0 <= overlap_tokens < room:
        raise ValueError(f"need max_tokens > 2 and 0 <= overlap_tokens < {room}")
    spans = tokenizer.spans(text)
    offsets, n = spans.offsets, len(spans.offsets)
    if n == 0:
        return [Chunk(0, 0, len(text), 0, 0, 0, 0, True)]
    words = spans.word_ids
    positions = np.arange(n)
    new_word = np.ones(n, dtype=bool)
    new_word[1:] = (words[1:] != words[:-1]) | (words[1:] < 0)
    word_start = np.maximum.accumulate(np.where(new_word, positions, 0))  # first token of word

    bounds: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + room, n)
        if end < n and word_start[end] > start:  # do not cut inside a word
            end = int(word_start[end])
        bounds.append((start, end))
        if end == n:
            break
        nxt = max(end - overlap_tokens, start + 1)
        snapped = int(word_start[nxt])
        start = snapped if snapped > start else nxt
    chunks = []
    for i, (a, b) in enumerate(bounds):
        last = i == len(bounds) - 1
        chunks.append(
            Chunk(
                index=i,
                start_char=0 if i == 0 else int(offsets[a, 0]),
                end_char=len(text) if b == n else int(offsets[b, 0]),
                token_start=a,
                token_end=b,
                content_start=int(offsets[a, 0]),
                content_end=int(offsets[b - 1, 1]),
                is_last=last,
            )
        )
    return chunks


@dataclass(slots=True)
class _Span:
    type: str
    start: int
    end: int
    confidence: float
    clip_left: bool  # starts at a non-first chunk's first token: the start may be cut
    clip_right: bool  # ends at a non-last chunk's last token: the end may be cut
    chunk: int
    reach: int  # end_char of the chunk that produced the span's right end

    def rank(self) -> tuple[int, float, int]:
        return (-(self.clip_left + self.clip_right), self.confidence, self.end - self.start)

    def same_entity(self, other: _Span, join_gap: int) -> bool:
        """Two chunks' views of one entity: where their spans differ, the shorter one was cut
        by its chunk's edge; or, disjoint, they meet across a cut (at most ``join_gap`` apart)."""
        if other.type != self.type or other.chunk == self.chunk:
            return False
        if self.end <= other.start or other.end <= self.start:
            left, right = (self, other) if self.end <= other.start else (other, self)
            return (
                left.chunk < right.chunk
                and left.clip_right
                and right.clip_left
                and right.start - left.end <= join_gap
                and right.start <= left.reach
            )
        if self.start != other.start:
            inner = self if self.start > other.start else other
            if not inner.clip_left:
                return False
        if self.end != other.end:
            inner = self if self.end < other.end else other
            if not inner.clip_right:
                return False
        return True

    def union(self, other: _Span) -> _Span:
        start, end = min(self.start, other.start), max(self.end, other.end)
        if (start, end) == (self.start, self.end) == (other.start, other.end):
            confidence = max(self.confidence, other.confidence)
        elif (start, end) in ((self.start, self.end), (other.start, other.end)):
            confidence = (self if (start, end) == (self.start, self.end) else other).confidence
        else:
            a, b = self.end - self.start, other.end - other.start
            confidence = (self.confidence * a + other.confidence * b) / max(a + b, 1)
        firsts = [s for s in (self, other) if s.start == start]
        lasts = [s for s in (self, other) if s.end == end]
        return _Span(
            self.type,
            start,
            end,
            confidence,
            all(s.clip_left for s in firsts),
            all(s.clip_right for s in lasts),
            max(s.chunk for s in lasts),
            max(s.reach for s in lasts),
        )


def merge_entities(
    chunk_entities: Sequence[tuple[Chunk, Sequence[Entity]]], join_gap: int = 1
) -> list[Entity]:
    """Entities of all chunks in document offsets, overlaps resolved; sorted by start.
    ``join_gap``: most characters between two same-type spans that meet across a cut (no
    overlap) for them to be joined as one entity (1 = a space, as in "John | Smith")."""
    spans: list[_Span] = []
    for c, entities in chunk_entities:
        for e in entities:
            start, end = c.start_char + e.start, c.start_char + e.end
            clip_left = c.index > 0 and start <= c.content_start
            clip_right = not c.is_last and end >= c.content_end
            spans.append(
                _Span(e.type, start, end, e.confidence, clip_left, clip_right, c.index, c.end_char)
            )
    spans.sort(key=lambda s: (s.start, -s.end, -s.confidence))
    kept: list[_Span] = []
    for span in spans:
        if kept and kept[-1].same_entity(span, join_gap):
            kept[-1] = kept[-1].union(span)
        elif kept and span.start < kept[-1].end:
            if span.rank() > kept[-1].rank():
                kept[-1] = span
        else:
            kept.append(span)
    return [Entity(s.type, s.start, s.end, s.confidence) for s in kept]


Recognise = Callable[[list[str]], Awaitable[Sequence[Sequence[Entity]]]]


async def extract_entities(
    text: str,
    tokenizer: SpanTokenizer,
    recognise: Recognise,
    *,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
) -> list[Entity]:
    """chunk -> ``recognise`` (one call with all chunk texts; it batches) -> merge."""
    chunks = chunk(text, tokenizer, max_tokens, overlap_tokens)
    found = await recognise([c.text(text) for c in chunks])
    if len(found) != len(chunks):
        raise InferenceRejected(f"recognise returned {len(found)} results for {len(chunks)} chunks")
    return merge_entities(list(zip(chunks, found, strict=True)))
