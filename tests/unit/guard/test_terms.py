"""TermList: file formats, whole-word case-insensitive matching, tenants, hot reload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from workers.guard.terms import TermList, TermListError, parse_terms


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, content: str, *, mtime_ns: int) -> None:
    path.write_text(content, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))  # explicit mtimes: no reliance on clock granularity


def spans(terms: TermList, tenant: str, text: str) -> list[str]:
    return [text[f.start : f.end] for f in terms.find(tenant, text)]


@pytest.fixture
def json_terms(tmp_path: Path) -> Path:
    path = tmp_path / "terms.json"
    content = {"*": ["Project Nightingale"], "acme": ["roadrunner", "Wile E. Coyote"]}
    write(path, json.dumps(content), mtime_ns=1_000_000_000)
    return path


def test_json_file_tenant_and_star(json_terms: Path) -> None:
    terms = TermList(json_terms)
    text = "The ROADRUNNER met wile e.  coyote about project nightingale."
    assert spans(terms, "acme", text) == ["ROADRUNNER", "wile e.  coyote", "project nightingale"]
    assert spans(terms, "globex", text) == ["project nightingale"]  # only the * list
    found = terms.find("acme", text)
    assert {f.type for f in found} == {"TERM"} and {f.detector for f in found} == {"terms"}
    assert "tenant 'acme'" in found[0].why and "all tenants" in found[2].why


def test_whole_words_only(json_terms: Path) -> None:
    terms = TermList(json_terms)
    assert spans(terms, "acme", "roadrunners and theroadrunner and roadrunner_x") == []
    assert spans(terms, "acme", "(roadrunner), 'roadrunner'!") == ["roadrunner", "roadrunner"]


def test_text_format_sections_comments_and_cjk(tmp_path: Path) -> None:
    path = tmp_path / "terms.txt"
    write(path, "# global\nconfidential\n\n[acme]\n机密\nbig  deal\n", mtime_ns=10**9)
    terms = TermList(path)
    assert terms.lists == {"*": ("confidential",), "acme": ("机密", "big deal")}
    assert spans(terms, "acme", "这是机密文件, a BIG DEAL, Confidential.") == [
        "机密",
        "BIG DEAL",
        "Confidential",
    ]
    assert spans(terms, "other", "这是机密文件, confidential") == ["confidential"]


def test_empty_lists_find_nothing(tmp_path: Path) -> None:
    path = tmp_path / "terms.json"
    write(path, "{}", mtime_ns=10**9)
    assert TermList(path).find("acme", "anything") == []


def test_hot_reload_on_mtime_change_checked_at_most_every_n_seconds(json_terms: Path) -> None:
    clock = FakeClock()
    terms = TermList(json_terms, check_every_s=5.0, clock=clock)
    assert terms.version == 1
    write(json_terms, json.dumps({"acme": ["coyote"]}), mtime_ns=2_000_000_000)
    clock.now += 4.9  # too early to look at the file again
    assert spans(terms, "acme", "coyote roadrunner") == ["roadrunner"]
    clock.now += 0.2
    assert spans(terms, "acme", "coyote roadrunner") == ["coyote"]
    assert terms.version == 2
    clock.now += 10  # unchanged file: no reload
    terms.find("acme", "x")
    assert terms.version == 2


def test_bad_reload_keeps_last_good_list(json_terms: Path) -> None:
    clock = FakeClock()
    terms = TermList(json_terms, check_every_s=1.0, clock=clock)
    write(json_terms, "{not json", mtime_ns=3_000_000_000)
    clock.now += 2
    assert spans(terms, "acme", "roadrunner") == ["roadrunner"]
    assert terms.last_error is not None and "TermListError" in terms.last_error
    json_terms.unlink()
    clock.now += 2
    assert spans(terms, "acme", "roadrunner") == ["roadrunner"]
    assert "FileNotFoundError" in (terms.last_error or "")
    write(json_terms, json.dumps({"acme": ["beep"]}), mtime_ns=4_000_000_000)
    clock.now += 2
    assert spans(terms, "acme", "beep roadrunner") == ["beep"]
    assert terms.last_error is None


def test_first_load_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TermList(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    write(bad, json.dumps({"acme": "not a list"}), mtime_ns=10**9)
    with pytest.raises(TermListError):
        TermList(bad)


def test_parse_terms_dedupes_case_insensitively() -> None:
    assert parse_terms('{"*": ["Foo", "foo", " FOO ", ""]}', as_json=True) == {"*": ("Foo",)}
    with pytest.raises(TermListError):
        parse_terms("[1, 2]", as_json=True)


def test_terms_with_regex_characters_are_literal(tmp_path: Path) -> None:
    path = tmp_path / "terms.txt"
    write(path, "c++\n(beta)\na.b\n", mtime_ns=10**9)
    terms = TermList(path)
    assert spans(terms, "t", "use c++ in (beta) not axb but a.b") == ["c++", "(beta)", "a.b"]
