"""Collapses aiokafka's per-retry log lines. While a broker is away aiokafka logs every failed
connect and metadata attempt, with no back-off between some of them: a worker with a dozen
clients wrote about 2,500 error lines a second (4 MB in a 15 s outage). Each distinct message
(logger, level, format string) is logged once per window; the next one after the window says how
many like it were held back. ``TraceIds`` and ``TraceFormatter`` put the current span's trace and
span ids on each line (text, or JSON lines)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson
from opentelemetry import trace


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


class TraceIds(logging.Filter):
    """Adds the current span's ``trace_id`` and ``span_id`` (hex; "" outside a span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else ""
        return True


class TraceFormatter(logging.Formatter):
    """A JSON object per line (``json_lines``), or ``base``'s text with the ids appended."""

    def __init__(self, base: logging.Formatter | None = None, json_lines: bool = False) -> None:
        super().__init__()
        self.base, self.json_lines = base or logging.Formatter(), json_lines

    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id = getattr(record, "trace_id", ""), getattr(record, "span_id", "")
        if not self.json_lines:
            text = self.base.format(record)
            return f"{text} trace_id={trace_id} span_id={span_id}" if trace_id else text
        line = {
            "ts": record.created, "level": record.levelname, "logger": record.name,
            "message": record.getMessage(), "trace_id": trace_id, "span_id": span_id,
        }  # fmt: skip
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def install(filt: RepeatFilter | None = None, *, json_lines: bool = False) -> RepeatFilter:
    """Attach to the root logger's handlers (where Faust's worker logs everything to), once:
    ``filt``, the trace ids and their formatter."""
    filt = filt or RepeatFilter()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(filt)
            handler.addFilter(TraceIds())
            handler.setFormatter(TraceFormatter(handler.formatter, json_lines))
    return filt
