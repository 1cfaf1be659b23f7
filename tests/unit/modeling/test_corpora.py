"""The package-shipped corpora: exact spans, the right entities, splits that keep groups apart."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pytest

from workers.modeling import corpora
from workers.modeling.examples import EntityExample, TextExample, check_spans

Split = tuple[list[EntityExample], list[EntityExample]]


@cache
def _sentiment() -> tuple[list[TextExample], list[TextExample]]:
    return corpora.sentiment_zh()


@cache
def _peoples_daily() -> Split:
    return corpora.peoples_daily()


@cache
def _twitter() -> Split:
    return corpora.twitter_ner()


def _entities(example: EntityExample) -> list[tuple[str, str]]:
    return [(example.text[start:end], kind) for start, end, kind in example.spans]


Examples = Sequence[TextExample | EntityExample]


def _assert_apart(train: Examples, held: Examples) -> None:
    assert not {e.group for e in train} & {e.group for e in held}
    assert not {e.text for e in train} & {e.text for e in held}


# ------------------------------------------------------------------------- parsing helpers


def test_bracketed_compound_is_one_entity_of_the_bracket_tag() -> None:
    units = corpora.parse_pd_line("通过/p  [中央/n  人民/n  广播/vn  电台/n]nt  、/w  [香港/ns]ns")
    assert units == [("通过", "p"), ("中央人民广播电台", "nt"), ("、", "w"), ("香港", "ns")]
    text, spans = corpora.tokens_to_spans(units)
    assert [(text[s:e], k) for s, e, k in spans] == [
        ("中央人民广播电台", "ORG"),
        ("香港", "LOCATION"),
    ]


def test_full_width_digits_become_ascii_and_sentences_keep_closing_quotes() -> None:
    units = corpora.parse_pd_line(
        "他/r  说/v  ：/w  “/w  好/a  。/w  ”/w  １９９８年/t  到/v  了/u  ！/w"
    )
    sentences = ["".join(w for w, _ in s) for s in corpora.split_sentences(units)]
    assert sentences == ["他说：“好。”", "1998年到了！"]


def test_adjacent_name_parts_become_one_person_each() -> None:
    assert corpora.person_sizes(["江", "泽民"]) == [2]
    assert corpora.person_sizes(["江", "泽民", "李", "鹏", "乔", "石", "朱", "镕基"]) == [2] * 4
    assert corpora.person_sizes(["陈", "方", "安生"]) == [3]
    assert corpora.person_sizes(["欧阳", "修", "克林顿"]) == [2, 1]
    assert corpora.person_sizes(["家贵", "军敏"]) == [1, 1]


def test_bio_spans_keep_mapped_types_and_unescape_html(tmp_path: Path) -> None:
    path = tmp_path / "ner.txt"
    rows = (
        "A&amp;E\tB-company\nin\tO\nNew\tB-geo-loc\nYork\tI-geo-loc\nESB\tB-facility\n\t\nhi\tO\n"
    )
    path.write_text(rows, encoding="utf-8")
    tweets = list(corpora.read_conll(path))
    assert len(tweets) == 2
    text, spans = corpora.bio_to_spans(tweets[0], corpora.TWITTER_TYPES)
    assert text == "A&E in New York ESB"
    assert [(text[s:e], k) for s, e, k in spans] == [("A&E", "ORG"), ("New York", "LOCATION")]


# ------------------------------------------------------------------------------ sentiment


def test_sentiment_splits_have_both_labels_and_share_no_text() -> None:
    train, held = _sentiment()
    assert len(train) >= 14_000 and len(held) >= 2_300
    for split in (train, held):
        counts = corpora.label_counts(split)
        assert set(counts) == {"negative", "positive"}
        assert min(counts.values()) / len(split) > 0.4
    _assert_apart(train, held)
    everything = train + held
    assert len({e.text for e in everything}) == len(everything)  # deduped, no two-label text
    assert all(len(e.text) >= corpora.MIN_CHARS and e.text == e.text.strip() for e in everything)
    assert {(e.lang, e.source) for e in everything} == {("zh", corpora.SENTIMENT_SOURCE)}


# -------------------------------------------------------------------------- People's Daily


def test_peoples_daily_spans_are_exact_and_checked() -> None:
    train, held = _peoples_daily()
    assert len(train) >= 38_000 and len(held) >= 4_000
    counts = corpora.span_counts(train)
    assert counts["PERSON"] >= 14_000 and counts["LOCATION"] >= 24_000 and counts["ORG"] >= 2_900
    for example in train + held:
        check_spans(example)
        assert corpora.MIN_CHARS <= len(example.text) <= corpora.MAX_SENTENCE_CHARS
    assert {(e.lang, e.source) for e in train + held} == {("zh", corpora.PEOPLES_DAILY_SOURCE)}


def test_peoples_daily_known_sentence() -> None:
    train, held = _peoples_daily()
    start = "12月31日，中共中央总书记、国家主席江泽民发表1998年新年讲话"
    (example,) = [e for e in train + held if e.text.startswith(start)]
    assert _entities(example) == [("中共中央", "ORG"), ("江泽民", "PERSON")]
    assert example.text.endswith("》。")


def test_peoples_daily_paragraphs_stay_on_one_side() -> None:
    train, held = _peoples_daily()
    _assert_apart(train, held)
    assert 0.07 < len(held) / (len(train) + len(held)) < 0.13


# --------------------------------------------------------------------------------- Twitter


def test_twitter_spans_present_typed_and_exact() -> None:
    train, held = _twitter()
    assert len(train) >= 1_900 and len(held) >= 300
    for split in (train, held):
        counts = corpora.span_counts(split)
        assert counts["with_spans"] >= 80
        assert {"PERSON", "LOCATION", "ORG"} <= set(counts)
    for example in train + held:
        check_spans(example)
        assert "&amp;" not in example.text and "  " not in example.text
    persons = {t for e in train + held for t, k in _entities(e) if k == "PERSON"}
    assert "Mickey Rourke" in persons
    _assert_apart(train, held)


def test_splits_are_seeded_and_stable() -> None:
    train, held = _twitter()
    again = corpora.twitter_ner(13)
    other = corpora.twitter_ner(14)
    assert again == (train, held)
    assert {e.group for e in other[1]} != {e.group for e in held}


# ------------------------------------------------------------------------------ chatterbot


@pytest.mark.parametrize(("lang", "minimum"), [("en", 2_000), ("chinese", 500)])
def test_chatterbot_turns_are_labelled_by_category(lang: str, minimum: int) -> None:
    turns = corpora.chatterbot_turns(lang)
    assert len(turns) >= minimum
    labels = corpora.label_counts(turns)
    assert {"greetings", "ai", "psychology"} <= set(labels) and len(labels) >= 15
    code = turns[0].lang
    assert code in ("en", "zh") and all(t.source == f"chatterbot-{code}" for t in turns)
    assert all(t.text and t.group.startswith(f"{code}/") for t in turns)


def test_chatterbot_rejects_an_unknown_language() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        corpora.chatterbot_turns("fr")
