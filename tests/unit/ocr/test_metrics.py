"""OCR metrics: normalisation rules, character error rate, line agreement, the set counter."""

from __future__ import annotations

import pytest

from workers.ocr.metrics import CerCounter, cer, line_agreement, normalize


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("abc", "abd", 1 / 3),
        ("abc", "abc", 0.0),
        ("abc", "", 1.0),
        ("ab", "ba", 1.0),
        ("abc", "abcde", 2 / 3),
        ("", "", 0.0),
        ("", "x", 1.0),
        ("患者男性", "患者女性", 0.25),
    ],
)
def test_cer_known_values(ref: str, hyp: str, expected: float) -> None:
    assert cer(ref, hyp) == pytest.approx(expected)


def test_normalize_folds_full_width_and_compatibility_forms() -> None:
    assert normalize("ＡＢＣ１２３", "en") == "ABC123"
    assert normalize("金额：￥１２．５０（已付）", "zh") == "金额:¥12.50(已付)"
    assert normalize("体温38.5℃。", "zh") == "体温38.5°C。"


def test_normalize_collapses_white_space_and_keeps_line_breaks() -> None:
    assert normalize("  Order \t #A7X-22913  ", "en") == "Order #A7X-22913"
    assert normalize("first\n\n   \n second \n", "en") == "first\nsecond"
    assert normalize("a\u3000b", "en") == "a b"  # ideographic space


def test_normalize_drops_spaces_next_to_cjk_in_zh_only() -> None:
    assert normalize("患者 男 ， 45 岁", "zh") == "患者男,45岁"
    assert normalize("订单号 SO-2026-104233", "zh") == "订单号SO-2026-104233"
    assert normalize("电话 138 1234 5678", "zh") == "电话138 1234 5678"  # digits keep theirs
    assert normalize("BP 120/80 mmHg", "zh") == "BP 120/80 mmHg"
    assert normalize("call 138 1234", "en") == "call 138 1234"
    assert normalize("患者 男", "en") == "患者 男"  # the rule is zh's
    assert normalize("患者 男", None) == "患者男"
    assert normalize("ＢＰ １２０", "zh") == "BP 120"  # full-width letters are not CJK


def test_normalize_keeps_case() -> None:
    assert normalize("Order so-1", "en") != normalize("Order SO-1", "en")


def test_line_agreement_pairs_lines_in_order() -> None:
    assert line_agreement(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert line_agreement(["a", "b", "c"], ["a", "c"]) == pytest.approx(2 / 3)  # one missing
    assert line_agreement(["a", "c"], ["a", "x", "c"]) == pytest.approx(2 / 3)  # one extra
    assert line_agreement(["a", "b"], ["b", "a"]) == 0.5  # order matters
    assert line_agreement([], []) == 1.0
    assert line_agreement(["a"], []) == 0.0
    assert line_agreement(["a", ""], ["  a "]) == 1.0  # empty lines ignored, text normalised


def test_line_agreement_normalises_with_the_language() -> None:
    assert line_agreement(["订单 号"], ["订单号"], "zh") == 1.0
    assert line_agreement(["订单 号"], ["订单号"], "en") == 0.0


def test_counter_sums_edits_over_characters_per_language() -> None:
    counter = CerCounter()
    assert counter.add(["abcd"], ["abcx"], "en") == pytest.approx(0.25)
    assert counter.add(["ab"], ["ab"], "en") == 0.0
    assert counter.add(["患者男性", "主诉"], ["患者女性", "主诉"], "zh") == pytest.approx(1 / 7)
    assert counter.cer("en") == pytest.approx(1 / 6)  # not the mean of 0.25 and 0
    assert counter.cer("zh") == pytest.approx(1 / 7)  # the line break is a character
    assert counter.cer() == pytest.approx(2 / 13)
    assert counter.line_exact("en") == 0.5
    assert counter.line_exact("zh") == 0.5
    assert counter.line_exact() == 0.5
    summary = counter.summary()
    assert set(summary) == {"en", "zh", "all"}
    assert summary["all"]["images"] == 3.0 and summary["zh"]["chars"] == 7.0


def test_counter_normalises_and_joins_lines() -> None:
    counter = CerCounter()
    counter.add(["订单号 SO-1", "金额：１２元"], ["订单号SO-1", "金额:12元"], "zh")
    assert counter.cer("zh") == 0.0 and counter.line_exact("zh") == 1.0
    counter.add(["ab", "cd"], ["abcd"], "en")  # a merged line costs the line break
    assert counter.cer("en") == pytest.approx(1 / 5)
    assert CerCounter().cer() == 0.0 and CerCounter().line_exact() == 1.0
