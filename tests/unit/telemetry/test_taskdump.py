"""The SIGUSR1 task dump: where each suspended task waits, identical stacks counted once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

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


def test_sigusr1_logs_the_dump(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        taskdump.install(asyncio.get_running_loop())
        try:
            parked = asyncio.create_task(wait_for_commit(asyncio.Event()))
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(100):  # the handler runs on a later loop turn
                if taskdump.HEADER in caplog.text:
                    break
                await asyncio.sleep(0.01)
            parked.cancel()
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)

    with caplog.at_level(logging.WARNING, logger=taskdump.__name__):
        asyncio.run(main())
    assert "in wait_for_commit" in caplog.text
