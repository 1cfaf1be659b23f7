"""``python -m bench <name> [OPTIONS]``: every benchmark command in one click group.

Each command is the ``main`` of its module (``python -m bench.<name>`` runs the same one). A
module is imported only when its command runs or shows its own help, so ``python -m bench --help``
reads nothing but the modules' docstrings.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import click

COMMANDS = (
    "ceiling", "context", "guard", "kafka_txn", "model", "naive", "ocr", "ocr_accuracy",
    "provenance", "run", "scaling", "tracing",
)  # fmt: skip


def _summary(name: str) -> str:
    """``bench.<name>``'s docstring up to its first colon or full stop, read without importing
    the module."""
    spec = importlib.util.find_spec(f"bench.{name}")
    if spec is None or spec.origin is None:
        return ""
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text())) or ""
    return re.split(r"[:.](?:\s|$)", " ".join(doc.split()), maxsplit=1)[0]


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = cmd_name.replace("-", "_")
        if name not in COMMANDS:
            return None
        command = importlib.import_module(f"bench.{name}").main
        assert isinstance(command, click.Command), f"bench.{name}.main is not a click command"
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, _summary(name)) for name in COMMANDS])


@click.group(cls=LazyGroup)
def cli() -> None:
    """inferstream's benchmarks: `python -m bench NAME --help` shows the options of one."""


def main() -> None:
    cli(prog_name="python -m bench")


if __name__ == "__main__":
    main()
