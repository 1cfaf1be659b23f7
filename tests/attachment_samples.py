"""Image attachments for tests (issue 19), built in memory and fast: good images whose content is
known, and the hostile set, each with the reason code ``workers.attachments`` must give it.

Importable by unit and integration tests; nothing here touches the network or the disk.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

TEXT = "HELLO 19"
# The upright content of the EXIF-rotated samples: white, with a black block in the top-left
# quadrant; width > height, so a missed or wrong rotation shows in the size or the corner.
UPRIGHT_SIZE = (96, 48)  # (width, height)
MARKER = (0, 0, 48, 24)  # the black block: left, top, right, bottom


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def inline(data: bytes, media_type: str, att_id: str = "img", **extra: Any) -> dict[str, Any]:
    """An ``attachments`` item carrying ``data`` inline."""
    return {"id": att_id, "media_type": media_type, "data": b64(data), **extra}


def _encode(im: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def text_image(text: str = TEXT, size: tuple[int, int] = (320, 64)) -> Image.Image:
    """Black text on white, in Pillow's embedded font (no font file needed)."""
    im = Image.new("RGB", size, "white")
    font = ImageFont.load_default(size=size[1] // 2)
    ImageDraw.Draw(im).text((8, size[1] // 6), text, fill="black", font=font)
    return im


@cache
def text_png(text: str = TEXT) -> bytes:
    return _encode(text_image(text), "PNG")


@cache
def text_jpeg(text: str = TEXT) -> bytes:
    return _encode(text_image(text), "JPEG", quality=90)


def upright_pattern() -> Image.Image:
    im = Image.new("RGB", UPRIGHT_SIZE, "white")
    ImageDraw.Draw(im).rectangle((MARKER[0], MARKER[1], MARKER[2] - 1, MARKER[3] - 1), "black")
    return im


# what the camera stored, for an orientation tag that says how to turn it upright
_STORED = {
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
    3: Image.Transpose.ROTATE_180,
}


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A JPEG stored sideways (``orientation`` 6, 8 or 3) whose upright view is
    ``upright_pattern()``: decoded correctly it is ``UPRIGHT_SIZE`` with the block top-left."""
    stored = upright_pattern().transpose(_STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def corrupt_exif_jpeg() -> bytes:
    """``text_jpeg()`` with an APP1 Exif segment of garbage right after SOI."""
    payload = b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x13" * 40
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = text_jpeg()
    return data[:2] + app1 + data[2:]


def rgba_png() -> bytes:
    """Fully transparent except an opaque black left half: on white, the right half is white."""
    im = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    ImageDraw.Draw(im).rectangle((0, 0, 19, 19), (0, 0, 0, 255))
    return _encode(im, "PNG")


def grey16_png(value: int = 0x8000) -> bytes:
    return _encode(Image.new("I;16", (8, 4), value), "PNG")


def palette_gif_two_frames() -> bytes:
    """Two frames: black then white; the first frame is the one read."""
    frames = [Image.new("P", (16, 8), 0), Image.new("P", (16, 8), 1)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 255, 255])
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def cmyk_jpeg() -> bytes:
    return _encode(text_image().convert("CMYK"), "JPEG", quality=90)


def encoded(fmt: str) -> bytes:
    """``text_image()`` as PNG, JPEG, WEBP, GIF, BMP or TIFF."""
    return _encode(text_image(), fmt)


# --- hostile ------------------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@cache
def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of ``side`` x ``side`` all-black pixels (400 Mpx at 20000) in ~50 KB:
    the rows are compressed one at a time, so building it allocates nothing large."""
    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join([*(packer.compress(row) for _ in range(side)), packer.flush()])
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    data = text_jpeg()
    return data[: len(data) // 2]


def truncated_png() -> bytes:
    data = text_png()
    return data[: len(data) // 2]


SVG_AS_PNG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
    b'width="100" height="40"><script>alert(1)</script><text y="20">HELLO</text></svg>\n'
)
HTML_AS_PNG = b"<!DOCTYPE html>\n<html><body><img src=x onerror=alert(1)>HELLO</body></html>\n"
PLAIN_TEXT = b"HELLO 19: this is just text, not an image\n"
PDF_AS_PNG = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


@dataclass(frozen=True)
class HostileCase:
    """An ``attachments`` item and the reason code it must be refused with."""

    name: str
    item: dict[str, Any]
    code: str


def hostile_cases() -> list[HostileCase]:
    """One attachment per hostile input; each event carries one of them (``id`` = the name)."""
    png = text_png()
    return [
        HostileCase("empty", inline(b"", "image/png", "empty"), "attachment_empty"),
        HostileCase(
            "declared_100mb",
            inline(png, "image/png", "declared_100mb", size=100 * 2**20),
            "attachment_too_large",
        ),
        HostileCase("bomb", inline(png_bomb(), "image/png", "bomb"), "attachment_too_many_pixels"),
        HostileCase(
            "truncated_jpeg",
            inline(truncated_jpeg(), "image/jpeg", "truncated_jpeg"),
            "attachment_truncated",
        ),
        HostileCase("svg", inline(SVG_AS_PNG, "image/png", "svg"), "attachment_not_image"),
        HostileCase("html", inline(HTML_AS_PNG, "image/png", "html"), "attachment_not_image"),
        HostileCase("text", inline(PLAIN_TEXT, "image/png", "text"), "attachment_not_image"),
        HostileCase("pdf", inline(PDF_AS_PNG, "image/png", "pdf"), "attachment_not_image"),
        HostileCase(
            "png_as_jpeg", inline(png, "image/jpeg", "png_as_jpeg"), "attachment_type_mismatch"
        ),
        HostileCase(
            "bad_base64",
            {"id": "bad_base64", "media_type": "image/png", "data": "iVBOR!!not*base64=="},
            "attachment_bad_base64",
        ),
        HostileCase(
            "traversal",
            {"id": "traversal", "media_type": "image/png", "ref": "../../etc/passwd"},
            "attachment_ref_invalid",
        ),
        HostileCase(
            "s3_ref",
            {"id": "s3_ref", "media_type": "image/png", "ref": "s3://bucket/key.png"},
            "attachment_ref_unsupported",
        ),
        HostileCase(
            "svg_declared",
            inline(SVG_AS_PNG, "image/svg+xml", "svg_declared"),
            "attachment_type_unsupported",
        ),
    ]
