"""Property tests: random texts, including emoji, combining marks and stray selectors."""

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from workers.provenance import textmark
from workers.provenance.keys import KeyRing

RING = KeyRing.generate(["a", "b"])
PIDS = st.binary(min_size=8, max_size=8).map(bytes.hex)
EXTRAS = st.sampled_from(
    [
        "\ufe0f",
        "\ufe0e",
        "\ufe00",
        "\U000e0100",
        "\u200d",
        "\u0301",
        "😀",
        "❤️",
        "1️⃣",
        "#️⃣",
        "0︀",
        "葛󠄀",
        "\n",
    ]
)
TEXTS = st.lists(st.one_of(st.characters(), EXTRAS), max_size=300).map("".join)
PROSE = st.lists(
    st.sampled_from(["the", "model", "answer", "is", "ready,", "café", "déjà", "naïve", "Ωμέγα"]),
    min_size=12,
    max_size=80,
).map(" ".join)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(TEXTS, PIDS)
def test_strip_undoes_embed_on_clean_text(text: str, pid: str) -> None:
    assume(not textmark.has_mark_symbols(text))
    assert textmark.strip(textmark.embed(text, pid, "a", RING)) == text


@SETTINGS
@given(TEXTS, PIDS)
def test_strip_is_idempotent_and_embed_agrees_with_strip(text: str, pid: str) -> None:
    once = textmark.strip(text)
    assert textmark.strip(once) == once
    assert textmark.strip(textmark.embed(text, pid, "b", RING)) == once


@SETTINGS
@given(TEXTS)
def test_no_detection_on_random_text(text: str) -> None:
    assert textmark.extract(text, RING) == []


@SETTINGS
@given(PROSE, st.lists(st.integers(0, 255), min_size=30, max_size=200))
def test_no_detection_on_random_selectors_after_letters(text: str, noise: list[int]) -> None:
    letters = iter(noise)
    noisy = "".join(c + textmark.to_selector(next(letters, 0)) if c.isalpha() else c for c in text)
    assert textmark.extract(noisy, RING) == []


@SETTINGS
@given(PROSE, PIDS, st.data())
def test_any_fragment_with_a_full_frame_is_traced(text: str, pid: str, data: st.DataObject) -> None:
    marked = textmark.embed(text, pid, "a", RING)
    selectors = [i for i, c in enumerate(marked) if textmark.from_selector(c) is not None]
    assume(len(selectors) >= textmark.FRAME_LEN)
    first = data.draw(st.integers(0, len(selectors) - textmark.FRAME_LEN))
    start = data.draw(st.integers(selectors[first - 1] + 1 if first else 0, selectors[first]))
    fragment = marked[start : selectors[first + textmark.FRAME_LEN - 1] + 1]
    assert [(h.provenance_id, h.kid) for h in textmark.extract(fragment, RING)] == [(pid, "a")]


@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
            st.sampled_from(["[PHONE]", "[CARD]", "[EMAIL]", "[A]", "[PERSON]"]),
        ),
        max_size=8,
    )
)
def test_the_ascii_fast_path_finds_the_general_paths_slots(parts: list[str]) -> None:
    base = textmark.strip("".join(parts))
    assume(base.isascii())
    assert textmark._slots(base) == textmark._slots_general(base, textmark._protected(base))
