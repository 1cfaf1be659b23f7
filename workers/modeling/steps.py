"""What the model builds share: their error type and the timed, named steps they report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress


class BuildError(RuntimeError):
    """The build produced something wrong (numerics, labels, signature); nothing was installed."""


class Steps:
    """Rich progress over named steps, recording each step's wall time."""

    def __init__(self, progress: Progress, console: Console, steps: tuple[str, ...]) -> None:
        self.progress, self.console = progress, console
        self.task = progress.add_task("build", total=len(steps))
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[None]:
        self.progress.update(self.task, description=f"{name}: {detail}" if detail else name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        self.console.log(f"[green]✓[/] {name:<11} {self.timings[name]:7.2f} s  {detail}")
        self.progress.advance(self.task)
