"""Image attachments on chat turns (issue 19): parse, fetch and decode them to RGB pixels for OCR.
Every refusal is an ``InvalidEvent`` with a ``REASONS`` code and a detail naming the attachment.

Wire shape: ``attachments`` is a list of at most ``max_count`` objects ``{"id"?, "media_type",
"data" | "ref", "size"?, "name"?}``; other keys are refused (a typo like ``mime_type`` must not pass
silently). ``data`` is strict base64 (no whitespace, no ``data:`` prefix); ``ref`` is a relative key
into an ``ObjectStore``: only ``LocalObjectStore`` exists, S3-compatible stores are not wired
(nothing could test them offline), so ``s3://`` and every other URL is refused as unsupported.
Allowed: PNG, JPEG, WebP, GIF, BMP, TIFF (screenshots, photos, scans); SVG is markup, refused.

Decoding: the magic bytes must match the declared type; PIL opens it with that one plugin only;
the header's dimensions are checked before any pixel is decoded; GIF/TIFF give their first frame;
a corrupt EXIF block is ignored (read as stored, ``orientation`` 1). Truncation: PIL's ``load()``
and, for PNG/JPEG/WebP/BMP, a structural check that a global ``LOAD_TRUNCATED_IMAGES`` cannot skip.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from workers.errors import InvalidEvent

REASONS: dict[str, str] = {
    "attachment_invalid": "'attachments' or one of its items does not have the expected shape",
    "attachment_too_many": "more attachments than max_count on one event",
    "attachment_duplicate_id": "two attachments of one event share an id",
    "attachment_type_unsupported": "the media type (declared or sniffed) is not an allowed image",
    "attachment_too_large": "the attachment (declared, encoded or read) is larger than max_bytes",
    "attachment_bad_base64": "'data' is not strict base64",
    "attachment_empty": "the attachment has 0 bytes",
    "attachment_size_mismatch": "the declared 'size' differs from the bytes received",
    "attachment_ref_invalid": "'ref' is absolute, climbs out of the store ('..', a symlink) or odd",
    "attachment_ref_unsupported": "'ref' is a URL (s3://, http://, ...) the store does not serve",
    "attachment_not_found": "'ref' names nothing (or not a regular file) in the object store",
    "attachment_unreadable": "the object store could not read 'ref' (permissions, I/O error)",
    "attachment_not_image": "the bytes are not an image (SVG, HTML, XML, PDF, text, unknown)",
    "attachment_type_mismatch": "the sniffed image format differs from the declared media type",
    "attachment_too_many_pixels": "width x height over max_pixels or a side over max_side",
    "attachment_truncated": "the image file ends before its data does",
    "attachment_undecodable": "the image is corrupt or cannot be decoded",
}

MiB = 1 << 20
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-ms-bmp": "image/bmp"}
# media type -> the one PIL plugin allowed to open it (its name is the subtype, upper-cased)
_PIL_FORMATS = {f"image/{t}": t.upper() for t in ("png", "jpeg", "webp", "gif", "bmp", "tiff")}
_FIELDS = frozenset({"id", "media_type", "data", "ref", "size", "name"})
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_MAX_REF_LEN = 1024
_MAX_NAME_LEN = 256


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """What one event may carry. ``allowed_types`` are media types (see ``_PIL_FORMATS``)."""

    max_bytes: int = 10 * MiB
    max_pixels: int = 40_000_000
    max_side: int = 12_000
    max_count: int = 4
    allowed_types: frozenset[str] = field(default_factory=lambda: frozenset(_PIL_FORMATS))


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment as declared: exactly one of ``data`` (base64, decoded lazily) or ``ref``."""

    id: str
    media_type: str
    data: str | None = None
    ref: str | None = None
    size: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class DecodedImage:
    """Pixels ready for OCR: ``rgb`` is HxWx3 uint8 RGB, upright (EXIF orientation applied)."""

    rgb: np.ndarray[Any, np.dtype[np.uint8]]
    width: int
    height: int
    format: str  # the sniffed media type, e.g. "image/png"
    sha256: str  # of the attachment's bytes as received
    orientation: int = 1  # the EXIF orientation applied, 1 if none (or unreadable)


class ObjectStore(Protocol):
    """Where ``ref`` attachments live. ``read`` returns at most ``max_bytes + 1`` bytes (one more
    tells the caller it is too large) or raises ``InvalidEvent`` (``attachment_*`` codes)."""

    def read(self, ref: str, max_bytes: int) -> bytes: ...


def _fail(code: str, att_id: str, detail: str) -> InvalidEvent:
    return InvalidEvent(code, f"attachment {att_id!r}: {detail}")


def _ref_fail(code: str, ref: str, detail: str) -> InvalidEvent:
    return InvalidEvent(code, f"ref {ref[:200]!r}: {detail}")


def normalize_media_type(value: str) -> str:
    mt = value.strip().lower()
    return _ALIASES.get(mt, mt)


def parse_attachments(raw: object, limits: AttachmentLimits) -> tuple[Attachment, ...]:
    """Validate the JSON value of ``attachments`` (``None`` -> no attachments). Cheap: nothing is
    decoded, but a declared ``size`` or a base64 length already over ``max_bytes`` is refused."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidEvent(
            "attachment_invalid", f"'attachments' must be a list, got {type(raw).__name__}"
        )
    if len(raw) > limits.max_count:
        raise InvalidEvent("attachment_too_many", f"{len(raw)} attachments > {limits.max_count}")
    seen: set[str] = set()
    parsed = []
    for index, item in enumerate(raw):
        att = _parse_one(index, item, limits)
        if att.id in seen:
            raise _fail("attachment_duplicate_id", att.id, f"id repeated at index {index}")
        seen.add(att.id)
        parsed.append(att)
    return tuple(parsed)


def _parse_one(index: int, item: object, limits: AttachmentLimits) -> Attachment:
    label = f"#{index}"
    if not isinstance(item, dict):
        raise _fail("attachment_invalid", label, f"must be an object, got {type(item).__name__}")
    unknown = sorted(str(k) for k in item if k not in _FIELDS)
    if unknown:
        raise _fail("attachment_invalid", label, "unknown fields: " + ", ".join(unknown)[:200])
    att_id = item.get("id", f"a{index}")
    if not isinstance(att_id, str) or not _ID_RE.fullmatch(att_id):
        raise _fail("attachment_invalid", label, "'id' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    media_type = item.get("media_type")
    if not isinstance(media_type, str):
        raise _fail("attachment_invalid", att_id, "'media_type' must be a string")
    media_type = normalize_media_type(media_type)
    if media_type not in limits.allowed_types:
        allowed = ", ".join(sorted(limits.allowed_types))
        raise _fail("attachment_type_unsupported", att_id, f"{media_type[:64]!r} not in {allowed}")
    data, ref = item.get("data"), item.get("ref")
    if (data is None) == (ref is None):
        raise _fail("attachment_invalid", att_id, "exactly one of 'data' or 'ref' is required")
    if data is not None and not isinstance(data, str):
        raise _fail("attachment_invalid", att_id, "'data' must be a base64 string")
    if ref is not None and (not isinstance(ref, str) or not 0 < len(ref) <= _MAX_REF_LEN):
        raise _fail("attachment_invalid", att_id, f"'ref' must be a string of 1..{_MAX_REF_LEN}")
    size = item.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise _fail("attachment_invalid", att_id, "'size' must be a non-negative integer")
    biggest = max(size or 0, _b64_size(data or ""))  # declared, or what the base64 will give
    if biggest > limits.max_bytes:
        raise _fail("attachment_too_large", att_id, f"{biggest} bytes > {limits.max_bytes}")
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > _MAX_NAME_LEN):
        raise _fail("attachment_invalid", att_id, f"'name' must be a string of <= {_MAX_NAME_LEN}")
    return Attachment(att_id, media_type, data=data, ref=ref, size=size, name=name)


def _b64_size(data: str) -> int:
    """The decoded size of base64 text, without decoding it."""
    padding = len(data[-2:]) - len(data[-2:].rstrip("="))
    return (len(data) - padding) * 3 // 4


class LocalObjectStore:
    """Attachments as files under ``root``; ``ref`` is a relative POSIX path. Refused: URLs (no
    S3-compatible store is wired), absolute paths, ``..``, backslashes, NUL, anything whose
    resolved path (symlinks followed) leaves ``root``, and anything but a regular file."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def read(self, ref: str, max_bytes: int) -> bytes:
        path = self._resolve(ref)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as exc:
            raise _ref_fail("attachment_not_found", ref, "no such object") from exc
        except OSError as exc:
            raise _ref_fail("attachment_unreadable", ref, exc.strerror or str(exc)) from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            os.close(fd)
            if not stat.S_ISREG(info.st_mode):  # a directory, a FIFO (O_NONBLOCK: no hang)
                raise _ref_fail("attachment_not_found", ref, "not a regular file")
            raise _ref_fail("attachment_too_large", ref, f"{info.st_size} B > {max_bytes}")
        with os.fdopen(fd, "rb") as fh:
            try:
                return fh.read(max_bytes + 1)
            except OSError as exc:
                raise _ref_fail("attachment_unreadable", ref, str(exc)) from exc

    def _resolve(self, ref: str) -> Path:
        if _SCHEME_RE.match(ref):
            scheme = ref.split(":", 1)[0].lower()
            why = "only relative keys are served (no S3-compatible store is wired)"
            raise _ref_fail("attachment_ref_unsupported", ref, f"{scheme}: {why}")
        if not ref or ref.startswith(("/", "~")) or ".." in ref.split("/") or "\x00" in ref:
            raise _ref_fail("attachment_ref_invalid", ref, "must be relative, without '..' or NUL")
        if "\\" in ref:
            raise _ref_fail("attachment_ref_invalid", ref, "a backslash is not a separator here")
        try:
            path = (self.root / ref).resolve(strict=True)
        except FileNotFoundError as exc:
            raise _ref_fail("attachment_not_found", ref, "no such object") from exc
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
            raise _ref_fail("attachment_ref_invalid", ref, str(exc)[:200]) from exc
        if not path.is_relative_to(self.root):
            raise _ref_fail("attachment_ref_invalid", ref, "resolves outside the store")
        return path


def load_bytes(att: Attachment, store: ObjectStore | None, limits: AttachmentLimits) -> bytes:
    """The attachment's bytes: strict base64 of ``data``, or ``store.read(ref)``."""
    if att.data is not None:
        if _b64_size(att.data) > limits.max_bytes:
            raise _fail("attachment_too_large", att.id, f"encoded data over {limits.max_bytes} B")
        try:
            blob = base64.b64decode(att.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _fail("attachment_bad_base64", att.id, str(exc)[:200]) from exc
    elif att.ref is not None:
        if store is None:
            raise _fail("attachment_ref_unsupported", att.id, "no object store is configured")
        try:
            blob = store.read(att.ref, limits.max_bytes)
        except InvalidEvent as exc:  # name the attachment as well as the ref
            raise _fail(exc.code, att.id, exc.detail) from exc
    else:
        raise _fail("attachment_invalid", att.id, "neither 'data' nor 'ref'")
    if not blob:
        raise _fail("attachment_empty", att.id, "0 bytes")
    if len(blob) > limits.max_bytes:
        raise _fail("attachment_too_large", att.id, f"more than {limits.max_bytes} bytes")
    if att.size is not None and att.size != len(blob):
        raise _fail("attachment_size_mismatch", att.id, f"declared {att.size}, got {len(blob)}")
    return blob


def load_image(
    att: Attachment, store: ObjectStore | None, limits: AttachmentLimits
) -> DecodedImage:
    """``load_bytes`` then ``decode_image``."""
    blob = load_bytes(att, store, limits)
    return decode_image(blob, att.media_type, limits, attachment_id=att.id)


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
_BMP_HEADER_SIZES = {n.to_bytes(4, "little") for n in (12, 16, 40, 52, 56, 64, 108, 124)}


def sniff(data: bytes) -> str | None:
    """The image media type the magic bytes say, or None."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM" and data[14:18] in _BMP_HEADER_SIZES:
        return "image/bmp"
    return None


def _not_image_detail(data: bytes) -> str:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<"):
        html = b"<html" in head or b"<!doctype html" in head
        kind = "SVG" if b"<svg" in head else "HTML" if html else "XML"
        return f"{kind} markup, not an image"
    if head.startswith(b"%pdf-"):
        return "a PDF document, not an image"
    if data[4:8] == b"ftyp":
        return f"an ISO media file ({data[8:12].decode('latin-1')!r}: HEIC/AVIF/MP4), not supported"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognized signature {data[:8].hex()}"
    return "text, not an image"


def _structurally_truncated(data: bytes, media_type: str) -> bool:
    """Checks that do not depend on PIL's global ``LOAD_TRUNCATED_IMAGES``."""
    if media_type == "image/png":
        return b"\x00\x00\x00\x00IEND" not in data
    if media_type == "image/jpeg":
        last_scan = data.rfind(b"\xff\xda")
        return last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0
    if media_type == "image/webp":
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    if media_type == "image/bmp":
        return int.from_bytes(data[2:6], "little") > len(data)  # a size of 0 (unknown) passes
    return False


def decode_image(
    data: bytes, declared: str, limits: AttachmentLimits, *, attachment_id: str = "?"
) -> DecodedImage:
    """Sniff, check the header's dimensions, then decode the first frame to upright RGB uint8."""
    aid = attachment_id
    declared = normalize_media_type(declared)
    if declared not in limits.allowed_types:
        raise _fail("attachment_type_unsupported", aid, f"declared {declared[:64]!r}")
    if not data:
        raise _fail("attachment_empty", aid, "0 bytes")
    sniffed = sniff(data)
    if sniffed is None:
        raise _fail("attachment_not_image", aid, _not_image_detail(data))
    if sniffed not in limits.allowed_types:
        raise _fail("attachment_type_unsupported", aid, f"the bytes are {sniffed}")
    if sniffed != declared:
        raise _fail("attachment_type_mismatch", aid, f"declared {declared}, sniffed {sniffed}")
    im = _open(data, sniffed, limits, aid)
    try:
        if _structurally_truncated(data, sniffed):
            raise _fail("attachment_truncated", aid, "the file ends before its image data does")
        try:
            im.seek(0)  # GIF/TIFF: the first frame only
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            cut = isinstance(exc, EOFError) or "truncated" in str(exc).lower()
            code = "attachment_truncated" if cut else "attachment_undecodable"
            raise _fail(code, aid, f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        orientation = _orientation(im)
        rgb = _to_rgb(im)
        transposed = _TRANSPOSE.get(orientation)
        if transposed is not None:
            rgb = rgb.transpose(transposed)
        pixels = np.array(rgb, dtype=np.uint8)  # a writable copy, HxWx3
    except MemoryError as exc:
        raise _fail("attachment_too_many_pixels", aid, "not enough memory to decode") from exc
    finally:
        im.close()
    digest = hashlib.sha256(data).hexdigest()
    return DecodedImage(pixels, pixels.shape[1], pixels.shape[0], sniffed, digest, orientation)


def _open(data: bytes, media_type: str, limits: AttachmentLimits, aid: str) -> Image.Image:
    """Open (header only) with the sniffed format alone, and refuse oversized dimensions."""
    try:
        im = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[media_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail("attachment_too_many_pixels", aid, str(exc)[:200]) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        if _structurally_truncated(data, media_type):
            raise _fail("attachment_truncated", aid, "the file is cut short") from exc
        raise _fail("attachment_undecodable", aid, str(exc)[:200]) from exc
    width, height = im.size
    too_big = width > limits.max_side or height > limits.max_side
    too_big = too_big or width * height > limits.max_pixels
    if too_big or width <= 0 or height <= 0:
        im.close()
        code = "attachment_too_many_pixels" if too_big else "attachment_undecodable"
        limit = f"max_side {limits.max_side}, max_pixels {limits.max_pixels}"
        raise _fail(code, aid, f"{width}x{height} (limits: {limit})")
    return im


# EXIF orientation 2..8 -> what makes it upright (as ImageOps.exif_transpose)
_ORIENTED = "FLIP_LEFT_RIGHT ROTATE_180 FLIP_TOP_BOTTOM TRANSPOSE ROTATE_270 TRANSVERSE ROTATE_90"
_TRANSPOSE = {n: Image.Transpose[name] for n, name in enumerate(_ORIENTED.split(), start=2)}


def _orientation(im: Image.Image) -> int:
    """EXIF tag 0x0112, or 1 when absent, out of range or the EXIF block is corrupt."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a corrupt EXIF block: read the image as stored
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB: alpha composited on white, 16/32-bit grey scaled (not clipped) to 8 bits."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        wide = np.asarray(im).astype(np.int64)
        grey = (np.clip(wide, 0, 65535) // 257).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, F (clipped)
