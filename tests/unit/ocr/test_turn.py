"""A turn's text with images, and the result's ``ocr`` view after masking (ocr/turn.py)."""

from __future__ import annotations

from workers.guard.filter import MaskedSpan
from workers.ocr.turn import ReadImage, ReadLine, compose, ocr_view, sub_box

BOX = ((0, 0), (200, 0), (200, 20), (0, 20))


def image(*texts: str, attachment: str = "a0") -> ReadImage:
    lines = tuple(ReadLine(t, 0.9, BOX) for t in texts)
    return ReadImage(attachment, 640, 480, "ab" * 32, 1, lines)


def test_compose_typed_text_first_then_lines_with_their_offsets() -> None:
    turn = compose("see the bill", [image("Total 42", "Call 138 1234 5678")])
    assert turn.text == "see the bill\nTotal 42\nCall 138 1234 5678"
    assert turn.source == "text+image"
    for span in turn.spans:
        line = turn.images[span.image].lines[span.line]
        assert turn.text[span.start : span.end] == line.text


def test_compose_without_typed_text_is_an_image_turn() -> None:
    turn = compose("  ", [image("one"), image("two", "three", attachment="a1")])
    assert turn.text == "one\ntwo\nthree"
    assert turn.source == "image"
    assert [(s.image, s.line, s.start, s.end) for s in turn.spans] == [
        (0, 0, 0, 3), (1, 0, 4, 7), (1, 1, 8, 13),
    ]  # fmt: skip


def test_compose_with_no_lines_keeps_the_typed_text() -> None:
    turn = compose("hello", [image()])
    assert turn.text == "hello" and turn.spans == ()
    assert compose("", [image()]).text == ""


def test_masked_line_text_and_redaction_box() -> None:
    turn = compose("", [image("Total 42", "Call 13812345678 now")])
    start = turn.text.index("13812345678")
    end = start + len("13812345678")
    masked_text = turn.text[:start] + "[PHONE]" + turn.text[end:]
    span = MaskedSpan("PHONE", "[PHONE]", start, end, start, start + len("[PHONE]"))
    view = ocr_view(turn, [span], masked_text)
    lines = view[0]["lines"]
    assert [line["text"] for line in lines] == ["Total 42", "Call [PHONE] now"]
    assert lines[1]["start"] == turn.spans[1].start  # offsets into the recognised text
    (redaction,) = view[0]["redactions"]
    assert redaction["line"] == 1 and redaction["type"] == "PHONE"
    xs = [p[0] for p in redaction["box"]]
    # characters 5..16 of a 20-character line on a 200-px box: x from 50 to 160
    assert min(xs) == 50 and max(xs) == 160


def test_mask_before_a_line_shifts_later_lines() -> None:
    turn = compose("my id 123456", [image("phone 555-0134")])
    s = turn.text.index("123456")
    masked_text = turn.text[:s] + "[ID]" + turn.text[s + 6 :]
    span = MaskedSpan("ID", "[ID]", s, s + 6, s, s + 4)
    view = ocr_view(turn, [span], masked_text)
    assert view[0]["lines"][0]["text"] == "phone 555-0134"
    assert view[0]["redactions"] == []


def test_blocked_turn_withholds_line_text_but_keeps_boxes() -> None:
    turn = compose("", [image("secret")])
    view = ocr_view(turn, [], None)
    assert view[0]["lines"][0]["text"] is None
    assert view[0]["lines"][0]["box"] == [list(p) for p in BOX]


def test_sub_box_counts_wide_characters_twice() -> None:
    line = ReadLine("电话ab", 0.9, ((0, 0), (60, 0), (60, 10), (0, 10)))
    # widths 2, 2, 1, 1: the two CJK characters take 4/6 of the box
    box = sub_box(line, 0, 2)
    assert box[0] == (0, 0) and box[1] == (40, 0) and box[2] == (40, 10)


def test_pieces_of_one_row_join_with_a_space() -> None:
    left = ReadLine("联系电话", 0.9, ((40, 100), (160, 100), (160, 130), (40, 130)))
    right = ReadLine("13998765432", 0.9, ((200, 102), (420, 102), (420, 131), (200, 131)))
    below = ReadLine("next row", 0.9, ((40, 150), (300, 150), (300, 180), (40, 180)))
    turn = compose("", [ReadImage("a0", 500, 200, "00", 1, (left, right, below))])
    assert turn.text == "联系电话 13998765432\nnext row"
    pieces = [turn.text[s.start : s.end] for s in turn.spans]
    assert pieces == [line.text for line in (left, right, below)]
