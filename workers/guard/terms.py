"""Tenant-specific term lists, hot-reloaded from one file when it changes.

Two file formats. JSON (``*.json``, or any file starting with ``{``)::

    {"*": ["project nightingale"], "acme": ["roadrunner", "Wile E. Coyote"]}

or text: one term per line, ``#`` comments, ``[tenant]`` starts a tenant's section and lines
before the first section belong to ``*``. The ``*`` list applies to every tenant.

Matching is case-insensitive on whole words; runs of whitespace inside a term match any
whitespace. Term edges in scripts written without spaces (CJK, kana, Hangul, Thai) need no word
boundary, so ``机密`` is found inside ``这是机密文件``.

The file is stat'ed at most every ``check_every_s`` seconds (injected ``clock``) and reloaded when
its mtime, size or inode changes. A bad reload (missing file, invalid JSON) keeps the last good
lists and records ``last_error``; the first load, in the constructor, raises instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from workers.guard.detectors import Finding

log = logging.getLogger(__name__)
ALL_TENANTS = "*"
# Thai, CJK + kana, Hangul, CJK compatibility, fullwidth forms, CJK extensions.
_NO_SPACE_SCRIPTS: tuple[tuple[int, int], ...] = ((0x0E00, 0x0E7F), (0x2E80, 0x9FFF))
_NO_SPACE_SCRIPTS += ((0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF), (0x20000, 0x3FFFF))


class TermListError(ValueError):
    """A term file that cannot be parsed."""


def _needs_boundary(ch: str) -> bool:
    if not (ch.isalnum() or ch == "_"):
        return False
    return not any(lo <= ord(ch) <= hi for lo, hi in _NO_SPACE_SCRIPTS)


_Node = dict[str, "_Node"]  # a character trie; the key "" marks the end of a term


def _trie_regex(terms: list[str]) -> str:
    """One alternation per trie node, so matching cost does not grow with the number of terms;
    longer terms are tried before their prefixes."""
    root: _Node = {}
    for term in terms:
        lower = term.lower()
        node = root
        for ch in lower if len(lower) == len(term) else term:
            node = node.setdefault(ch, {})
        node[""] = {}
    return _node_regex(root, None)


def _node_regex(node: _Node, edge: str | None) -> str:
    alts = []
    for ch in sorted(k for k in node if k):
        piece = r"\s+" if ch == " " else re.escape(ch)
        if edge is None and _needs_boundary(ch):
            piece = r"(?<!\w)" + piece
        alts.append(piece + _node_regex(node[ch], ch))
    if "" in node:
        alts.append(r"(?!\w)" if edge is not None and _needs_boundary(edge) else "")
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _key(term: str) -> str:
    return " ".join(term.split()).casefold()


def parse_terms(raw: str, *, as_json: bool) -> dict[str, tuple[str, ...]]:
    """Tenant -> terms (whitespace-normalized, deduplicated, order kept)."""
    lists: dict[str, list[str]] = {}
    if as_json:
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TermListError(f"not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise TermListError("the JSON term file must be an object: tenant -> list of terms")
        for tenant, terms in obj.items():
            if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
                raise TermListError(f"terms of tenant {tenant!r} must be a list of strings")
            lists[tenant] = terms
    else:
        section = ALL_TENANTS
        for line in raw.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]") and len(line) > 2:
                section = line[1:-1].strip()
            elif line and not line.startswith("#"):
                lists.setdefault(section, []).append(line)
    out: dict[str, tuple[str, ...]] = {}
    for tenant, terms in lists.items():
        seen: dict[str, str] = {}
        for term in terms:
            norm = " ".join(term.split())
            if norm:
                seen.setdefault(_key(norm), norm)
        out[tenant] = tuple(seen.values())
    return out


class TermList:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.check_every_s = check_every_s
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._lists: dict[str, tuple[str, ...]] = {}
        self._compiled: dict[str, tuple[re.Pattern[str], dict[str, str]] | None] = {}
        self.version = 0  # bumped by every successful load
        self.last_error: str | None = None
        self.reload()
        self._checked_at = clock()

    @property
    def lists(self) -> Mapping[str, tuple[str, ...]]:
        return dict(self._lists)

    def reload(self) -> None:
        """Read and parse the file now; raises ``OSError`` / ``TermListError`` on failure."""
        st = self.path.stat()
        raw = self.path.read_text(encoding="utf-8")
        as_json = self.path.suffix.lower() == ".json" or raw.lstrip().startswith("{")
        self._lists = parse_terms(raw, as_json=as_json)
        self._compiled = {}
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        self.version += 1
        self.last_error = None

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked_at < self.check_every_s:
            return
        self._checked_at = now
        try:
            st = self.path.stat()
            if (st.st_mtime_ns, st.st_size, st.st_ino) != self._stamp:
                self.reload()
                log.info("term list %s reloaded (version %d)", self.path, self.version)
        except (OSError, TermListError, UnicodeDecodeError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("term list %s not reloaded, keeping the last good one: %s", self.path, exc)

    def _matcher(self, tenant: str) -> tuple[re.Pattern[str], dict[str, str]] | None:
        key = tenant if tenant in self._lists else ALL_TENANTS
        if key not in self._compiled:
            owner: dict[str, str] = {}
            spelled: dict[str, str] = {}
            for source in (ALL_TENANTS, key):  # a tenant's own listing wins the attribution
                for term in self._lists.get(source, ()):
                    owner[_key(term)] = source
                    spelled[_key(term)] = term
            terms = list(spelled.values())
            pattern = re.compile(_trie_regex(terms), re.IGNORECASE) if terms else None
            self._compiled[key] = (pattern, owner) if pattern else None
        return self._compiled[key]

    def find(self, tenant: str, text: str) -> list[Finding]:
        """Listed terms of ``tenant`` and of ``*`` in ``text``, sorted by start."""
        self._maybe_reload()
        matcher = self._matcher(tenant)
        if matcher is None:
            return []
        pattern, owner = matcher
        found = []
        for m in pattern.finditer(text):
            source = owner.get(_key(m.group(0)), "?")
            where = "all tenants" if source == ALL_TENANTS else f"tenant {source!r}"
            why = f"listed term {_key(m.group(0))!r} ({where})"
            found.append(Finding("TERM", m.start(), m.end(), "terms", why))
        return found
