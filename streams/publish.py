"""Sends outside the processing engine: the policy table's dead letters (a policy record that does
not decode), through Faust's producer (acks=all), each flushed before the table moves on.

Conversation and document outcomes are not sent here: ``streams.engine`` produces them in each
input partition's transaction. ``Publisher`` is the seam ``create_app(publisher=...)`` takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol

import faust


class Publisher(Protocol):
    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes]
    ) -> Awaitable[object]: ...

    async def flush(self, pending: Sequence[Awaitable[object]]) -> None: ...


class FaustPublisher:
    def __init__(self, topics: Mapping[str, faust.TopicT]) -> None:
        self._topics = topics

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Mapping[str, bytes]
    ) -> Awaitable[object]:
        return await self._topics[topic].send(key=key, value=value, headers=dict(headers))

    async def flush(self, pending: Sequence[Awaitable[object]]) -> None:
        # Wait for the broker's acks of this batch's outputs before the stream acks the inputs:
        # a crash in between re-delivers the inputs (at least once) rather than losing outputs.
        await asyncio.gather(*pending)
