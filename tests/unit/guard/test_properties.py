"""Property tests: decide() never raises, masking is exact and leaves no detected digits."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.guard.detectors import Finding, detect_pii
from workers.guard.filter import ContentFilter, Decision, FilterPolicy

CF = ContentFilter()
ACTIONS = st.sampled_from(["allow", "mask", "block"])
TYPES = st.sampled_from(["EMAIL", "PHONE", "CARD", "IBAN", "CN_ID", "US_SSN", "IP_ADDRESS"])
POLICIES = st.builds(
    FilterPolicy,
    actions=st.dictionaries(TYPES | st.just("SECRET") | st.just("PERSON"), ACTIONS),
    safety_block_threshold=st.floats(0, 1),
    safety_mask_threshold=st.none() | st.floats(0, 1),
    default_action=ACTIONS,
)
ENTITIES = st.lists(
    st.builds(
        Finding,
        st.text(max_size=8),
        st.integers(-5, 300),
        st.integers(-5, 300),
        st.text(),
        st.text(),
    ),
    max_size=4,
)
# Text that keeps hitting the detectors' candidate patterns.
PII_ISH = st.text(alphabet="0123456789+-(). @:/=_abcdefxyzABCDEFKIXZ\n机", max_size=200)


def rebuild(text: str, d: Decision) -> str:
    """The original text, from the masked text and the spans' offsets."""
    out, cursor = [], 0
    for s in d.spans:
        assert d.text[s.new_start : s.new_end] == s.placeholder
        out += [d.text[cursor : s.new_start], text[s.start : s.end]]
        cursor = s.new_end
    out.append(d.text[cursor:])
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=300) | PII_ISH,
    policy=POLICIES,
    score=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    entities=ENTITIES,
)
def test_decide_never_raises_and_masking_is_exact(
    text: str, policy: FilterPolicy, score: float | None, entities: list[Finding]
) -> None:
    d = CF.decide(text, tenant="t", policy=policy, safety_score=score, model_entities=entities)
    assert d.action in ("allow", "mask", "block")
    if d.action == "block":
        assert d.text == "" and d.spans == []
        return
    assert rebuild(text, d) == text
    ends = [(s.start, s.end) for s in d.spans]
    assert all(a < b for a, b in ends) and all(
        b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(ends)
    )
    assert d.safety_score is None or math.isfinite(d.safety_score)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400) | PII_ISH)
def test_findings_are_sorted_disjoint_and_in_bounds(text: str) -> None:
    found = detect_pii(text)
    for f in found:
        assert 0 <= f.start < f.end <= len(text) and f.why and f.detector
    for a, b in itertools.pairwise(found):
        assert a.end <= b.start


def _luhn(body: str) -> str:
    total = sum(
        (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
        for i, d in enumerate(int(c) for c in reversed(body))
    )
    return body + str(-total % 10)


def _cn_id(region: int, year: int, month: int, day: int, seq: int) -> str:
    body = f"{region}{year:04d}{month:02d}{day:02d}{seq:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def _iban_de(bban: str) -> str:
    check = 98 - int("".join(str(int(c, 36)) for c in bban + "DE00")) % 97
    return f"DE{check:02d}{bban}"


DIGITS = st.text(alphabet="0123456789", min_size=1)
VALUES = st.one_of(
    st.builds(lambda d: _luhn("4" + d), st.text(alphabet="0123456789", min_size=14, max_size=14)),
    st.builds(
        lambda p, d: "1" + p + d,
        st.sampled_from("3456789"),
        st.text("0123456789", min_size=9, max_size=9),
    ),
    st.builds(
        lambda a, g, s: f"{a:03d}-{g:02d}-{s:04d}",
        st.integers(1, 665),
        st.integers(1, 99),
        st.integers(1, 9999),
    ),
    st.builds(
        _cn_id,
        st.sampled_from([110105, 440304, 510107]),
        st.integers(1950, 2015),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 999),
    ),
    st.builds(_iban_de, st.text(alphabet="0123456789", min_size=18, max_size=18)),
    st.builds(
        lambda a, b, c: f"{a}.{b}.{c}.9",
        st.integers(11, 99),
        st.integers(0, 255),
        st.integers(0, 255),
    ),
)
FILLER = st.text(alphabet=st.characters(blacklist_categories=["Nd", "No", "Nl", "Cs"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(FILLER, VALUES), min_size=1, max_size=4), tail=FILLER)
def test_masking_leaves_no_digit_of_a_detected_value(
    parts: list[tuple[str, str]], tail: str
) -> None:
    text, where = "", []
    for filler, value in parts:
        text += f"{filler} "
        where.append((len(text), len(text) + len(value)))
        text += f"{value} "
    text += tail
    d = CF.decide(text, tenant="t", policy=FilterPolicy(actions={}, default_action="mask"))
    assert d.action == "mask"
    for start, end in where:  # every inserted value was found and masked...
        assert any(s.start <= start and end <= s.end for s in d.spans), text[start:end]
    assert not any(c.isdigit() for c in d.text), d.text  # ...and none of its digits is left
