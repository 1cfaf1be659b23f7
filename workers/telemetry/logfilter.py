"""Collapses aiokafka's per-retry log lines. While a broker is away aiokafka logs every failed
connect and metadata attempt, with no back-off between some of them: a worker with a dozen
clients wrote about 2,500 error lines a second (4 MB in a 15 s outage). Each distinct message
(logger, level, format string) is logged once per window; the next one after the window says how
many like it were held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    def __init__(
        self,
        prefixes: tuple[str, ...] = ("aiokafka",),
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self.clock = clock
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes) or not isinstance(record.msg, str):
            return True
        key = (record.name, record.levelno, record.msg)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            # a literal suffix (no "%" in it) on the format string; its args stay as they are
            record.msg = f"{record.msg} [{held} more like this in the last {self.window_s:g} s]"
        if len(self._last) > 1000:  # distinct messages are few; bound it all the same
            self._last = {k: t for k, t in self._last.items() if now - t < self.window_s}
        return True


def install(filt: RepeatFilter | None = None) -> RepeatFilter:
    """Attach to the root logger's handlers (where Faust's worker logs everything to), once."""
    filt = filt or RepeatFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(filt)
    return filt
