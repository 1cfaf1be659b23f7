"""``fetch_fair`` (streams/fetching.py) against a fake consumer that drains its buffer the way
aiokafka's ``getmany`` does (partition by partition, in buffer order)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from streams.fetching import fetch_fair

A, B, C, D = (TopicPartition("in", i) for i in range(4))


class BufferedConsumer:
    def __init__(self, buffered: dict[TopicPartition, int]) -> None:
        self.buffer = {tp: list(range(n)) for tp, n in buffered.items()}
        self.calls: list[tuple[tuple[TopicPartition, ...], int, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.buffer)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        self.calls.append((partitions, timeout_ms, max_records or 0))
        left = max_records if max_records is not None else 10**9
        out: dict[TopicPartition, list[Any]] = {}
        for tp, records in self.buffer.items():  # aiokafka: one partition after another
            if (partitions and tp not in partitions) or not records or left <= 0:
                continue
            out[tp], self.buffer[tp] = records[:left], records[left:]
            left -= len(out[tp])
        return out


def _fetch(consumer: BufferedConsumer, room: int, turn: int = 0) -> dict[TopicPartition, list[Any]]:
    return asyncio.run(fetch_fair(consumer, room, turn))  # type: ignore[arg-type]


def test_a_deep_partition_does_not_crowd_out_the_others() -> None:
    consumer = BufferedConsumer({A: 5000, B: 10, C: 10, D: 3})
    got = _fetch(consumer, room=64)
    assert {tp: len(r) for tp, r in got.items()} == {A: 16, B: 10, C: 10, D: 3}
    # plain getmany(max_records=64) would have returned 64 records of A and nothing else
    assert consumer.calls[0][1] == 100  # only the first call waits for data
    assert all(timeout == 0 for _, timeout, _ in consumer.calls[1:])


def test_room_is_never_exceeded_and_the_first_partition_rotates() -> None:
    for room in (10, 3):
        served = set()
        for turn in range(4):
            consumer = BufferedConsumer({A: 100, B: 100, C: 100, D: 100})
            got = _fetch(consumer, room=room, turn=turn)
            assert sum(len(r) for r in got.values()) <= room
            assert all(len(r) <= max(1, room // 4) for r in got.values())
            served.add(frozenset(got))
        # room 10: everyone gets 2 every time; room 3 (< partitions): after the first call's
        # partition (aiokafka's buffer order), who gets the rest of the room rotates
        assert len(served) == 1 if room == 10 else len(served) > 1


def test_one_partition_gets_the_whole_room() -> None:
    consumer = BufferedConsumer({A: 500})
    assert len(_fetch(consumer, room=64)[A]) == 64
