"""The SIGUSR1 task dump: where each suspended task waits, identical stacks counted once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from workers.telemetry import taskdump


async def wait_for_commit(gate: asyncio.Event) -> None:
    await gate.wait()


async def read_changelog(gate: asyncio.Event) -> None:
    await asyncio.wait_for(gate.wait(), 60)


async def restore_table(gate: asyncio.Event) -> None:
    await read_changelog(gate)


def test_each_suspended_task_shows_the_coroutine_it_waits_in() -> None:
    async def main() -> str:
        gate = asyncio.Event()
        waiting = [asyncio.create_task(wait_for_commit(gate)) for _ in range(3)]
        restoring = asyncio.create_task(restore_table(gate))
        await asyncio.sleep(0)  # let them reach their awaits
        text = taskdump.format_tasks({*waiting, restoring})
        gate.set()
        await asyncio.gather(*waiting, restoring)
        return text

    text = asyncio.run(main())
    assert text.startswith(f"{taskdump.HEADER}: 4 tasks")
    blocks = text.split("\n")[1:]
    assert "3 tasks:" in blocks and "1 task:" in blocks
    at = blocks.index("3 tasks:")
    assert blocks[at + 1] == "  wait_for_commit"
    assert blocks[at + 2].endswith("in wait_for_commit")
    assert blocks[at + 3].endswith("in Event.wait")
    assert blocks[at + 4] == "    waits on Future"
    # a suspended coroutine's whole await chain, not just its outermost frame
    at = blocks.index("  restore_table")
    assert blocks[at + 1].endswith("in restore_table")
    assert blocks[at + 2].endswith("in read_changelog")
    assert blocks[at + 3].endswith("in wait_for")


SIGNALLED = """
import asyncio, logging, os, signal, sys
from workers.telemetry import taskdump

async def wait_for_commit(gate):
    await gate.wait()

async def main():
    taskdump.install(asyncio.get_running_loop())
    parked = asyncio.create_task(wait_for_commit(asyncio.Event()))
    await asyncio.sleep(0)
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.sleep(0.3)  # the handler runs on a later loop turn
    parked.cancel()

logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s")
asyncio.run(main())
"""


def test_sigusr1_logs_the_dump() -> None:
    """In a process of its own, as a worker gets it: a native library an earlier test loaded
    here (OpenVINO, NNCF's torch) may take a process-wide SIGUSR1 and crash the test run."""
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", SIGNALLED], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(taskdump.HEADER) and "in wait_for_commit" in out.stdout
