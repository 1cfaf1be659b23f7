"""Ed25519 key ring for provenance watermarks: signing by the active key id, verifying by any.

Keys never live in code. They come from a folder (``<kid>.pem`` = PKCS8 private key, unencrypted,
mode 0600; ``<kid>.pub.pem`` = SubjectPublicKeyInfo public key) or from the environment
(``INFERSTREAM_WATERMARK_KEYS`` = ``kid:base64(32-byte seed)[,kid:...]``, optionally
``INFERSTREAM_WATERMARK_PUBLIC_KEYS`` = ``kid:base64(32-byte public key)[,...]`` and
``INFERSTREAM_WATERMARK_ACTIVE_KID``). ``from_env`` reads the mapping it is given, never
``os.environ`` itself, so ``streams/settings.py`` stays the only env reader.

Rotation: add a new key, make it active; outputs signed by older kids still verify as long as
their (public) key stays in the ring. Text marks use a per-kid symmetric key derived with
HKDF-SHA256 from the private seed (:meth:`KeyRing.mark_key`): a verifier of *envelopes* needs only
public keys, a verifier of *text marks* needs the private ring.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from workers.errors import InferstreamError

log = logging.getLogger(__name__)

ENV_KEYS = "INFERSTREAM_WATERMARK_KEYS"
ENV_PUBLIC_KEYS = "INFERSTREAM_WATERMARK_PUBLIC_KEYS"
ENV_ACTIVE_KID = "INFERSTREAM_WATERMARK_ACTIVE_KID"
KID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MARK_SALT = b"inferstream.textmark.salt.v1"
_MARK_INFO = b"inferstream.textmark.v1|"


class ProvenanceKeyError(InferstreamError):
    """A key is missing, malformed or inconsistent: configuration, not data, so not retriable."""

    retriable = False
    reason = "provenance_key"


def check_kid(kid: str) -> str:
    """Return ``kid`` if it is a safe key id (file name and env-list friendly), else raise."""
    if not KID_PATTERN.fullmatch(kid):
        raise ProvenanceKeyError(f"invalid key id {kid!r}: use 1-64 of [A-Za-z0-9._-]")
    return kid


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class KeyRing:
    """Private keys by kid (may be none), public keys by kid (always), and the active kid."""

    def __init__(
        self,
        private: Mapping[str, Ed25519PrivateKey] | None = None,
        public: Mapping[str, Ed25519PublicKey] | None = None,
        active_kid: str | None = None,
    ) -> None:
        self._private = {check_kid(k): v for k, v in (private or {}).items()}
        self._public = {k: v.public_key() for k, v in self._private.items()}
        for kid, pub in (public or {}).items():
            check_kid(kid)
            known = self._public.get(kid)
            if known is not None and _raw_public(known) != _raw_public(pub):
                raise ProvenanceKeyError(f"public key for {kid!r} does not match its private key")
            self._public[kid] = pub
        if active_kid is None and self._private:
            active_kid = max(self._private)
        if active_kid is not None and active_kid not in self._private:
            raise ProvenanceKeyError(f"active key id {active_kid!r} has no private key")
        self._active = active_kid
        self._mark_keys: dict[str, bytes] = {}

    def __repr__(self) -> str:  # never print key material
        kids, private = list(self.kids), list(self.private_kids)
        return f"KeyRing(kids={kids}, private={private}, active={self._active!r})"

    # --- constructors ------------------------------------------------------------------------
    @classmethod
    def generate(cls, kids: Iterable[str], active_kid: str | None = None) -> KeyRing:
        """Fresh throwaway keys in memory (tests, benchmarks, dev)."""
        return cls({kid: Ed25519PrivateKey.generate() for kid in kids}, active_kid=active_kid)

    @classmethod
    def from_dir(cls, path: Path, active_kid: str | None = None) -> KeyRing:
        """Load ``<kid>.pem`` (PKCS8 private) and ``<kid>.pub.pem`` (public) files from ``path``."""
        if not path.is_dir():
            raise ProvenanceKeyError(f"key folder {path} does not exist")
        private: dict[str, Ed25519PrivateKey] = {}
        public: dict[str, Ed25519PublicKey] = {}
        for file in sorted(path.glob("*.pem")):
            data = file.read_bytes()
            try:
                if file.name.endswith(".pub.pem"):
                    pub = serialization.load_pem_public_key(data)
                    if not isinstance(pub, Ed25519PublicKey):
                        raise ProvenanceKeyError(f"{file} is not an Ed25519 public key")
                    public[check_kid(file.name[: -len(".pub.pem")])] = pub
                    continue
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise ProvenanceKeyError(f"cannot load {file}: {exc}") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise ProvenanceKeyError(f"{file} is not an Ed25519 private key")
            if os.name == "posix" and file.stat().st_mode & 0o077:
                log.warning("private key file %s is readable by group/others; chmod 600", file)
            private[check_kid(file.name[: -len(".pem")])] = key
        return cls(private, public, active_kid)

    @classmethod
    def from_spec(
        cls, keys: str | None, active_kid: str | None = None, public_keys: str | None = None
    ) -> KeyRing:
        """Parse ``kid:base64(seed)[,...]`` (and ``kid:base64(public)[,...]``) strings."""
        private = {kid: Ed25519PrivateKey.from_private_bytes(raw) for kid, raw in _parse_list(keys)}
        public = {
            kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in _parse_list(public_keys)
        }
        return cls(private, public, active_kid or None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> KeyRing:
        """Read ``INFERSTREAM_WATERMARK_KEYS``, ``..._PUBLIC_KEYS``, ``..._ACTIVE_KID``."""
        if not environ.get(ENV_KEYS) and not environ.get(ENV_PUBLIC_KEYS):
            raise ProvenanceKeyError(f"neither {ENV_KEYS} nor {ENV_PUBLIC_KEYS} is set")
        return cls.from_spec(
            environ.get(ENV_KEYS), environ.get(ENV_ACTIVE_KID), environ.get(ENV_PUBLIC_KEYS)
        )

    # --- queries -----------------------------------------------------------------------------
    @property
    def kids(self) -> tuple[str, ...]:
        """Every kid that can verify envelopes."""
        return tuple(sorted(self._public))

    @property
    def private_kids(self) -> tuple[str, ...]:
        """Every kid that can sign and verify text marks."""
        return tuple(sorted(self._private))

    @property
    def active_kid(self) -> str | None:
        return self._active

    def signing_key(self) -> tuple[str, Ed25519PrivateKey]:
        """The active kid and its private key; raises on a verify-only ring."""
        if self._active is None:
            raise ProvenanceKeyError("this key ring has no private key to sign with")
        return self._active, self._private[self._active]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._public.get(kid)

    def has_private(self, kid: str) -> bool:
        return kid in self._private

    def mark_key(self, kid: str) -> bytes:
        """32-byte HMAC key for text marks: HKDF-SHA256 of the kid's private seed."""
        cached = self._mark_keys.get(kid)
        if cached is not None:
            return cached
        private = self._private.get(kid)
        if private is None:
            raise ProvenanceKeyError(
                f"no private key for {kid!r}: text marks need the private ring"
            )
        seed = private.private_bytes_raw()
        hkdf = HKDF(hashes.SHA256(), length=32, salt=_MARK_SALT, info=_MARK_INFO + kid.encode())
        key = self._mark_keys[kid] = hkdf.derive(seed)
        return key

    def public_only(self) -> KeyRing:
        """The same ring without private keys (what an envelope-only verifier holds)."""
        return KeyRing(public=self._public)


def _parse_list(spec: str | None) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, b64 = item.partition(":")
        if not sep:
            raise ProvenanceKeyError("key list items must look like kid:base64")
        try:
            raw = base64.b64decode(b64.strip(), validate=True)
        except binascii.Error as exc:
            raise ProvenanceKeyError(f"key {kid!r} is not valid base64") from exc
        if len(raw) != 32:
            raise ProvenanceKeyError(f"key {kid!r} must be 32 raw bytes, got {len(raw)}")
        out.append((check_kid(kid.strip()), raw))
    return out


def generate_key_file(dir: Path, kid: str) -> Path:
    """Write a new private key ``<dir>/<kid>.pem`` (mode 0600) and ``<kid>.pub.pem``.

    Refuses to overwrite an existing key. Returns the private key's path.
    """
    check_kid(kid)
    dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    path = dir / f"{kid}.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(pem)
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (dir / f"{kid}.pub.pem").write_bytes(pub)
    return path


def seed_b64(key: Ed25519PrivateKey) -> str:
    """``base64(raw seed)`` as used in ``INFERSTREAM_WATERMARK_KEYS`` (for dev setup and tests)."""
    return base64.b64encode(key.private_bytes_raw()).decode()
