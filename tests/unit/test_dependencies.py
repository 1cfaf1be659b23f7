"""Every third-party module that streams/, workers/, bench/ and tests/ import comes from a
distribution pyproject.toml declares, in a group that is installed where the code runs:
streams/ and workers/ need [project].dependencies (the model build, workers/modeling/ and the OCR
models' quantization workers/ocr/quantize.py, may also use the ``build`` and ``data`` extras),
bench/ and tests/ may use any group (``dev`` for their own)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "workers", "bench", "tests")
# Imported, but not in requirements.lock: installed by hand where it is used (say where).
NOT_LOCKED = {
    "tensorrt": "workers/modeling/tensorrt_build.py on a GPU host: `pip install tensorrt`",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, set[str]]:
    """Group ("runtime" or an extra's name) -> its distributions, normalized."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"runtime": project["dependencies"], **project["optional-dependencies"]}
    name = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
    return {
        group: {normalize(m.group()) for req in reqs if (m := name.match(req))}
        for group, reqs in groups.items()
    }


def allowed_groups(path: Path, groups: dict[str, set[str]]) -> set[str]:
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith(("workers/modeling/", "workers/ocr/quantize.py")):
        return {"runtime", "build", "data"}
    if rel.startswith(("streams/", "workers/")):
        return {"runtime"}
    return set(groups)


def imports(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, module, dotted name to resolve) of each absolute import; ``from a import b``
    resolves ``a.b`` (``b`` may be a submodule: it tells which distribution of a namespace
    package is meant)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, node.module, f"{node.module}.{alias.name}"


@cache
def files_of(dist: str) -> frozenset[str]:
    return frozenset(f.as_posix() for f in distribution(dist).files or ())


def distributions_of(module: str, top_level: dict[str, list[str]]) -> set[str]:
    """The distributions that install ``module``; for a namespace package several distributions
    share (``opentelemetry``), the one whose files hold the longest prefix of the module."""
    parts = module.split(".")
    dists = top_level.get(parts[0], [])
    if len(dists) > 1:
        for n in range(len(parts), 1, -1):
            prefix = "/".join(parts[:n])
            owners = {
                d
                for d in dists
                if f"{prefix}.py" in files_of(d)
                or any(f.startswith(f"{prefix}/") for f in files_of(d))
            }
            if owners:
                return {normalize(d) for d in owners}
    return {normalize(d) for d in dists}


def test_every_third_party_import_is_declared() -> None:
    groups = declared()
    top_level = packages_distributions()
    problems: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            ok = set().union(*(groups[g] for g in allowed_groups(path, groups)))
            for line, module, name in imports(path):
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in PACKAGES or top in NOT_LOCKED:
                    continue
                where = f"{path.relative_to(ROOT)}:{line} imports {module}"
                dists = distributions_of(name, top_level)
                if not dists:
                    problems.append(f"{where}: no installed distribution provides {top!r}")
                elif not dists & ok:
                    problems.append(
                        f"{where}: from {' or '.join(sorted(dists))}, not declared in "
                        f"{' / '.join(sorted(allowed_groups(path, groups)))}"
                    )
    assert not problems, "\n".join(problems)


def test_not_locked_modules_are_really_not_locked() -> None:
    lock = (ROOT / "requirements.lock").read_text().lower()
    for module in NOT_LOCKED:
        assert not re.search(rf"^{re.escape(module)}==", lock, re.M), (
            f"{module} is in requirements.lock now: declare it in pyproject.toml instead"
        )
