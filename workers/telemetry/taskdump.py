"""Every asyncio task's await stack, written to the log on SIGUSR1: what a worker that is alive but
makes no progress is waiting on (py-spy sees threads, not suspended coroutines)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

HEADER = "asyncio task dump"


def await_chain(task: asyncio.Future[object], limit: int = 30) -> list[str]:
    """The frames of ``task``'s coroutine and of everything it awaits, outermost first.
    ``Task.get_stack`` stops at the outermost frame of a suspended coroutine; this follows
    ``cr_await`` / ``gi_yieldfrom`` down to the future the chain waits on."""
    lines: list[str] = []
    obj: Any = task.get_coro() if isinstance(task, asyncio.Task) else task
    while obj is not None and len(lines) < limit:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
    waiter = getattr(task, "_fut_waiter", None)  # the future the task is parked on (CPython)
    if waiter is not None:
        lines.append(f"    waits on {_describe(waiter)}")
    return lines


def _describe(fut: asyncio.Future[Any]) -> str:
    if isinstance(fut, asyncio.Task):
        return f"task {fut.get_name()} ({getattr(fut.get_coro(), '__qualname__', '?')})"
    return type(fut).__name__


def format_tasks(tasks: set[asyncio.Task[Any]] | None = None) -> str:
    """One block per distinct stack (identical stacks are counted once, as "N tasks")."""
    tasks = asyncio.all_tasks() if tasks is None else tasks
    stacks: Counter[str] = Counter()
    for task in tasks:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        stacks["\n".join([f"  {name}", *(await_chain(task) or ["    (not started)"])])] += 1
    blocks = [f"{n} task{'s' if n > 1 else ''}:\n{stack}" for stack, n in sorted(stacks.items())]
    return f"{HEADER}: {len(tasks)} tasks\n" + "\n".join(blocks)


def install(loop: asyncio.AbstractEventLoop, signum: int = signal.SIGUSR1) -> None:
    """``kill -USR1 <worker pid>`` logs the dump (at WARNING, so default levels keep it)."""
    loop.add_signal_handler(signum, lambda: log.warning("%s", format_tasks()))
