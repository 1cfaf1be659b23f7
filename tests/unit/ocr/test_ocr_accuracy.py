"""The pure scoring helpers of ``bench/ocr_accuracy.py`` (no models, no images)."""

from __future__ import annotations

import pytest

from bench.ocr_accuracy import (
    Tally,
    edit_ops,
    norm_lines,
    score_image,
    size_bucket,
    squash,
    sum_up,
    timing,
)
from workers.ocr.metrics import CerCounter, line_agreement

CASES = [
    (["Allergic to tamsulosin."], ["Allergictotamsulosin."], "en"),
    (["issued on February 7, 2027."], ["issued on February 7", "7,2027."], "en"),
    (["Order #A7X-22913", "Call (415) 555-0134"], ["Order #A7X-22913"], "en"),
    (["预约4月18日 17:00门诊，"], ["预约4月18日17：00门诊，"], "zh"),
    (["退款RMB 3,836.43已于"], ["退款RMB3，836.43已于", "多余"], "zh"),
    (["a"], [], "en"),
]


def test_squash_and_norm_lines() -> None:
    assert squash(" a b\n c\t") == "abc"
    assert norm_lines(["BP 120/80 ", "  ", "Ｘ  y"], "en", spaced=True) == ["BP 120/80", "X y"]
    assert norm_lines(["BP 120/80 ", "  ", "Ｘ  y"], "en", spaced=False) == ["BP120/80", "Xy"]


@pytest.mark.parametrize(("truth", "hyp", "lang"), CASES)
def test_spaced_way_is_the_metrics_module(truth: list[str], hyp: list[str], lang: str) -> None:
    counter = CerCounter()
    got = counter.add(truth, hyp, lang)
    t = score_image(truth, hyp, lang, spaced=True)
    assert t.cer == pytest.approx(got)
    assert t.line_exact == pytest.approx(counter.line_exact())
    assert t.line_exact == pytest.approx(line_agreement(truth, hyp, lang))


def test_no_whitespace_way_ignores_spaces_and_line_breaks() -> None:
    truth, hyp, lang = CASES[0]
    a, b = (score_image(truth, hyp, lang, spaced=s) for s in (True, False))
    assert (a.edits, b.edits, a.line_exact, b.line_exact) == (2, 0, 0.0, 1.0)
    truth, hyp, lang = CASES[1]
    b = score_image(truth, hyp, lang, spaced=False)
    assert (b.edits, b.chars, b.same, b.slots) == (1, len("issuedonFebruary7,2027."), 0, 2)


def test_tally_pools_characters_not_image_rates() -> None:
    rows = [{"a": Tally(1, 10, 1, 1, 1), "b": Tally()}, {"a": Tally(0, 90, 2, 3, 1), "b": Tally()}]
    total = sum_up(rows)["a"]
    assert (total.cer, total.line_exact, total.images) == (0.01, 0.75, 2)
    assert sum_up(rows, [1])["a"].cer == 0.0
    assert (Tally().cer, Tally().line_exact) == (0.0, 1.0)


def test_edit_ops_names_the_confusions() -> None:
    assert edit_ops("a b", "ab") == {"␠→∅": 1}
    assert edit_ops("ORD-0", "0RD-0\n") == {"O→0": 1, "∅→⏎": 1}


def test_timing_and_size_bucket() -> None:
    assert timing([4.0, 1.0, 3.0, 2.0]) == {"mean": 2.5, "p50": 2.5, "p90": 4.0}
    assert [size_bucket(n) for n in (18, 24, 25, 32, 33, 40)] == [
        "18-24 px", "18-24 px", "25-32 px", "25-32 px", "33-40 px", "33-40 px",
    ]  # fmt: skip
