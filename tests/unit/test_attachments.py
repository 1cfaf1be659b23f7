"""workers.attachments: the wire shape, the object store's path rules and the image decoder, one
test per rule, each asserting the exact reason code."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import ImageFile

from tests import attachment_samples as samples
from workers import attachments as mod
from workers.attachments import (
    REASONS,
    Attachment,
    AttachmentLimits,
    DecodedImage,
    LocalObjectStore,
    decode_image,
    load_bytes,
    load_image,
    parse_attachments,
)
from workers.errors import InvalidEvent

LIMITS = AttachmentLimits()
PNG = samples.text_png()


def code_of(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        fn(*args, **kwargs)
    assert info.value.code in REASONS
    return info.value.code


def item(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "img", "media_type": "image/png", "data": samples.b64(PNG)}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def decode(data: bytes, media_type: str = "image/png", limits: AttachmentLimits = LIMITS) -> Any:
    return decode_image(data, media_type, limits, attachment_id="img")


# --- parse_attachments -------------------------------------------------------------------------


def test_missing_or_empty_attachments_are_none() -> None:
    assert parse_attachments(None, LIMITS) == ()
    assert parse_attachments([], LIMITS) == ()


def test_a_good_list_parses_with_default_ids_and_normalized_types() -> None:
    atts = parse_attachments(
        [item(id=...), item(id=..., media_type=" IMAGE/JPG", data=None, ref="x/y.jpg", size=3)],
        LIMITS,
    )
    assert [a.id for a in atts] == ["a0", "a1"]
    assert atts[0].data == samples.b64(PNG) and atts[0].ref is None
    assert (atts[1].media_type, atts[1].ref, atts[1].size) == ("image/jpeg", "x/y.jpg", 3)


@pytest.mark.parametrize(
    "raw",
    [
        {"id": "img"},  # not a list
        "abc",
        ["not an object"],
        [item(mime_type="image/png")],  # an unknown field
        [item(ref="k.png")],  # both data and ref
        [item(data=...)],  # neither
        [item(media_type=...)],
        [item(media_type=5)],
        [item(data=123)],
        [item(data=None, ref="")],
        [item(id="../x")],
        [item(id="")],
        [item(id=7)],
        [item(size=-1)],
        [item(size=True)],
        [item(size="12")],
        [item(name=["x"])],
    ],
)
def test_a_bad_shape_is_attachment_invalid(raw: object) -> None:
    assert code_of(parse_attachments, raw, LIMITS) == "attachment_invalid"


def test_more_than_max_count_is_too_many() -> None:
    raw = [item(id=f"i{n}") for n in range(LIMITS.max_count + 1)]
    assert code_of(parse_attachments, raw, LIMITS) == "attachment_too_many"


def test_a_repeated_id_is_a_duplicate_also_against_a_default_id() -> None:
    assert code_of(parse_attachments, [item(), item()], LIMITS) == "attachment_duplicate_id"
    raw = [item(id="a1"), item(id=...)]  # the second one's default id is "a1"
    assert code_of(parse_attachments, raw, LIMITS) == "attachment_duplicate_id"


@pytest.mark.parametrize(
    "media_type", ["image/svg+xml", "text/html", "application/pdf", "image/heic"]
)
def test_a_type_outside_allowed_types_is_unsupported(media_type: str) -> None:
    raw = [item(media_type=media_type)]
    assert code_of(parse_attachments, raw, LIMITS) == "attachment_type_unsupported"


def test_allowed_types_is_a_limit() -> None:
    only_png = AttachmentLimits(allowed_types=frozenset({"image/png"}))
    raw = [item(media_type="image/jpeg")]
    assert code_of(parse_attachments, raw, only_png) == "attachment_type_unsupported"


def test_a_declared_100_mb_is_too_large_before_anything_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base64, "b64decode", _must_not_decode)
    raw = [samples.inline(PNG, "image/png", size=100 * 2**20)]
    assert code_of(parse_attachments, raw, LIMITS) == "attachment_too_large"


def test_base64_longer_than_max_bytes_is_too_large_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base64, "b64decode", _must_not_decode)
    small = AttachmentLimits(max_bytes=300)
    data = "A" * 404  # 303 bytes once decoded
    assert code_of(parse_attachments, [item(data=data)], small) == "attachment_too_large"
    assert parse_attachments([item(data="A" * 400)], small)[0].data == "A" * 400  # 300: fits


def _must_not_decode(*args: object, **kwargs: object) -> bytes:
    raise AssertionError("decoded before the size check")


# --- load_bytes ----------------------------------------------------------------------------------


def test_inline_data_is_decoded() -> None:
    (att,) = parse_attachments([item(size=len(PNG))], LIMITS)
    assert load_bytes(att, None, LIMITS) == PNG


@pytest.mark.parametrize(
    "data",
    [
        "iVBOR!!not*base64==",
        samples.b64(PNG)[:-1],  # bad padding
        "data:image/png;base64," + samples.b64(PNG),  # a data: URL is not base64
        samples.b64(PNG)[:40] + "\n" + samples.b64(PNG)[40:],  # MIME line breaks
    ],
)
def test_non_strict_base64_is_bad_base64(data: str) -> None:
    att = Attachment("img", "image/png", data=data)
    assert code_of(load_bytes, att, None, LIMITS) == "attachment_bad_base64"


def test_zero_bytes_is_empty() -> None:
    assert code_of(load_bytes, Attachment("img", "image/png", data=""), None, LIMITS) == (
        "attachment_empty"
    )


def test_a_declared_size_that_differs_is_a_mismatch() -> None:
    att = Attachment("img", "image/png", data=samples.b64(PNG), size=len(PNG) + 1)
    assert code_of(load_bytes, att, None, LIMITS) == "attachment_size_mismatch"


def test_decoded_data_over_max_bytes_is_too_large() -> None:
    att = Attachment("img", "image/png", data=samples.b64(PNG))
    small = AttachmentLimits(max_bytes=len(PNG) - 1)
    assert code_of(load_bytes, att, None, small) == "attachment_too_large"


def test_a_ref_without_a_store_is_unsupported() -> None:
    att = Attachment("img", "image/png", ref="k.png")
    assert code_of(load_bytes, att, None, LIMITS) == "attachment_ref_unsupported"


# --- LocalObjectStore ----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    root = tmp_path / "store"
    (root / "chats" / "c1").mkdir(parents=True)
    (root / "chats" / "c1" / "turn.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    return LocalObjectStore(root)


def test_store_reads_a_relative_key(store: LocalObjectStore) -> None:
    assert store.read("chats/c1/turn.png", LIMITS.max_bytes) == PNG
    att = parse_attachments([item(data=None, ref="chats/c1/turn.png")], LIMITS)[0]
    image = load_image(att, store, LIMITS)
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()


@pytest.mark.parametrize(
    "ref",
    [
        "/etc/passwd",
        "../secret.png",
        "chats/../../secret.png",
        "chats\\c1\\turn.png",
        "a\x00b",
        "~",
    ],
)
def test_store_refuses_paths_out_of_the_root(store: LocalObjectStore, ref: str) -> None:
    assert code_of(store.read, ref, LIMITS.max_bytes) == "attachment_ref_invalid"


def test_store_refuses_a_symlink_escaping_the_root(store: LocalObjectStore) -> None:
    (store.root / "escape.png").symlink_to(store.root.parent / "secret.png")
    (store.root / "inside.png").symlink_to(store.root / "chats" / "c1" / "turn.png")
    assert code_of(store.read, "escape.png", LIMITS.max_bytes) == "attachment_ref_invalid"
    (store.root / "up").symlink_to(store.root.parent, target_is_directory=True)
    assert code_of(store.read, "up/secret.png", LIMITS.max_bytes) == "attachment_ref_invalid"
    assert store.read("inside.png", LIMITS.max_bytes) == PNG  # a link that stays inside is fine


@pytest.mark.parametrize(
    "ref", ["s3://bucket/k.png", "S3://bucket/k.png", "http://h/k.png", "file:///etc/passwd"]
)
def test_store_refuses_urls(store: LocalObjectStore, ref: str) -> None:
    assert code_of(store.read, ref, LIMITS.max_bytes) == "attachment_ref_unsupported"


def test_store_missing_directory_or_fifo_is_not_found(store: LocalObjectStore) -> None:
    assert code_of(store.read, "chats/c1/nope.png", 100) == "attachment_not_found"
    assert code_of(store.read, "chats/c1", 100) == "attachment_not_found"
    os.mkfifo(store.root / "pipe")  # would block a plain open() for reading
    assert code_of(store.read, "pipe", 100) == "attachment_not_found"


def test_store_oversize_is_too_large(store: LocalObjectStore) -> None:
    assert code_of(store.read, "chats/c1/turn.png", len(PNG) - 1) == "attachment_too_large"
    att = Attachment("img", "image/png", ref="chats/c1/turn.png")
    small = AttachmentLimits(max_bytes=len(PNG) - 1)
    with pytest.raises(InvalidEvent) as info:
        load_bytes(att, store, small)
    assert info.value.code == "attachment_too_large"
    assert "'img'" in info.value.detail and "turn.png" in info.value.detail


# --- decode_image: good images -----------------------------------------------------------------


def _is_image(image: DecodedImage, width: int, height: int) -> None:
    assert (image.width, image.height) == (width, height)
    assert image.rgb.shape == (height, width, 3) and image.rgb.dtype == np.uint8
    assert image.rgb.flags.writeable and image.rgb.flags.c_contiguous


def test_a_text_png_decodes_to_rgb() -> None:
    image = decode(PNG)
    _is_image(image, 320, 64)
    assert (image.format, image.orientation) == ("image/png", 1)
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()
    dark = (image.rgb.max(axis=2) < 100).mean()
    assert 0.01 < dark < 0.5  # the text is there, on a white page
    assert (image.rgb[0, :] == 255).all()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_allowed_format_decodes(fmt: str) -> None:
    image = decode(samples.encoded(fmt), f"image/{fmt.lower()}")
    _is_image(image, 320, 64)
    assert image.format == f"image/{fmt.lower()}"


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_an_exif_rotated_photo_is_read_upright(orientation: int) -> None:
    image = decode(samples.exif_rotated_jpeg(orientation), "image/jpeg")
    assert image.orientation == orientation
    _is_image(image, *samples.UPRIGHT_SIZE)
    grey = image.rgb.mean(axis=2)
    left, top, right, bottom = samples.MARKER
    w, h = samples.UPRIGHT_SIZE
    assert grey[top + 4 : bottom - 4, left + 4 : right - 4].max() < 40  # the block, top-left
    for rows, cols in [((0, bottom), (right, w)), ((bottom, h), (0, w))]:
        assert grey[rows[0] + 4 : rows[1] - 4, cols[0] + 4 : cols[1] - 4].min() > 215


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_a_corrupt_exif_block_is_ignored() -> None:
    image = decode(samples.corrupt_exif_jpeg(), "image/jpeg")
    assert image.orientation == 1
    _is_image(image, 320, 64)


def test_alpha_is_composited_on_white() -> None:
    image = decode(samples.rgba_png())
    assert (image.rgb[:, :20] == 0).all() and (image.rgb[:, 20:] == 255).all()


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    image = decode(samples.grey16_png(0x8000))
    assert (image.rgb == 0x8000 // 257).all()


def test_cmyk_is_converted_to_rgb() -> None:
    image = decode(samples.cmyk_jpeg(), "image/jpeg")
    _is_image(image, 320, 64)
    assert image.rgb[0, 0].min() > 200  # the white page stays white


def test_a_multi_frame_gif_yields_its_first_frame() -> None:
    image = decode(samples.palette_gif_two_frames(), "image/gif")
    _is_image(image, 16, 8)
    assert (image.rgb == 0).all()


# --- decode_image: refusals -----------------------------------------------------------------------


def test_the_20000_square_bomb_is_refused_fast_without_allocating_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PIL's pixel buffers are malloc'd in C, out of tracemalloc's sight: ``load`` must not run
    at all (a spy fails the test), and what Python allocates stays small."""
    bomb = samples.png_bomb()
    assert len(bomb) < 100_000
    monkeypatch.setattr(ImageFile.ImageFile, "load", _must_not_load)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        assert code_of(decode, bomb) == "attachment_too_many_pixels"
        # limits above PIL's own bomb guard: PIL's DecompressionBombError maps to the same code
        huge = AttachmentLimits(max_pixels=10**9, max_side=50_000)
        assert code_of(decode, bomb, "image/png", huge) == "attachment_too_many_pixels"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 50 * 2**20


def _must_not_load(self: object) -> None:
    raise AssertionError("pixels decoded before the dimensions were checked")


def test_over_max_pixels_or_max_side_is_refused_from_the_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ImageFile.ImageFile, "load", _must_not_load)
    assert code_of(decode, samples.png_bomb(7_000)) == "attachment_too_many_pixels"  # 49 Mpx
    assert code_of(decode, PNG, "image/png", AttachmentLimits(max_side=319)) == (
        "attachment_too_many_pixels"
    )
    assert code_of(decode, PNG, "image/png", AttachmentLimits(max_pixels=320 * 64 - 1)) == (
        "attachment_too_many_pixels"
    )


@pytest.mark.parametrize("load_truncated", [False, True])
@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (samples.truncated_jpeg(), "image/jpeg"),
        (samples.truncated_png(), "image/png"),
        (PNG[:24], "image/png"),  # cut in its header
        (samples.encoded("WEBP")[:100], "image/webp"),
        (samples.encoded("BMP")[:-300], "image/bmp"),
    ],
)
def test_a_truncated_file_is_truncated_whatever_pil_is_told(
    monkeypatch: pytest.MonkeyPatch, data: bytes, media_type: str, load_truncated: bool
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    assert code_of(decode, data, media_type) == "attachment_truncated"


@pytest.mark.parametrize(
    ("data", "word"),
    [
        (samples.SVG_AS_PNG, "SVG"),
        (b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (samples.HTML_AS_PNG, "HTML"),
        (b"<html><body>x</body></html>", "HTML"),
        (b"<?xml version='1.0'?><note/>", "XML"),
        (samples.PDF_AS_PNG, "PDF"),
        (samples.PLAIN_TEXT, "text"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe", "unrecognized"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "HEIC/AVIF"),
    ],
)
def test_a_non_image_disguised_as_png_is_not_image(data: bytes, word: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(data)
    assert info.value.code == "attachment_not_image"
    assert word in info.value.detail and "'img'" in info.value.detail


def test_bytes_of_another_format_than_declared_are_a_mismatch() -> None:
    assert code_of(decode, PNG, "image/jpeg") == "attachment_type_mismatch"
    assert code_of(decode, samples.text_jpeg(), "image/webp") == "attachment_type_mismatch"


def test_a_sniffed_format_outside_allowed_types_is_unsupported() -> None:
    only_png = AttachmentLimits(allowed_types=frozenset({"image/png"}))
    gif = samples.encoded("GIF")
    assert code_of(decode, gif, "image/png", only_png) == "attachment_type_unsupported"
    assert code_of(decode, PNG, "image/svg+xml") == "attachment_type_unsupported"


def test_a_corrupt_image_is_undecodable() -> None:
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    corrupt = (
        b"\x89PNG\r\n\x1a\n"
        + samples._chunk(b"IHDR", ihdr)
        + samples._chunk(b"IDAT", b"\x78\x9c" + b"\xde\xad\xbe\xef" * 10)
        + samples._chunk(b"IEND", b"")
    )
    assert code_of(decode, corrupt) == "attachment_undecodable"
    zero_size = corrupt.replace(ihdr, struct.pack(">IIBBBBB", 0, 8, 8, 2, 0, 0, 0))
    assert code_of(decode, zero_size) == "attachment_undecodable"


def test_empty_bytes_are_empty() -> None:
    assert code_of(decode, b"") == "attachment_empty"


# --- the hostile set, end to end; the reason table -------------------------------------------


@pytest.mark.parametrize("case", samples.hostile_cases(), ids=lambda c: c.name)
def test_every_hostile_attachment_is_refused_with_its_code(
    case: samples.HostileCase, store: LocalObjectStore
) -> None:
    with pytest.raises(InvalidEvent) as info:
        for att in parse_attachments([case.item], LIMITS):
            load_image(att, store, LIMITS)
    assert info.value.code == case.code
    assert f"'{case.name}'" in info.value.detail  # the detail names the attachment


def test_every_code_the_module_raises_is_described() -> None:
    source = Path(mod.__file__).read_text(encoding="utf-8")
    used = set(re.findall(r'"(attachment_[a-z0-9_]+)"', source))
    assert used == set(REASONS)
    assert all(desc and "\n" not in desc for desc in REASONS.values())
