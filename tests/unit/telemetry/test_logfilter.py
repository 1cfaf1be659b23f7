"""aiokafka's per-retry log lines are logged once per window, with a count of those held back;
log lines carry the current span's trace and span ids."""

from __future__ import annotations

import io
import logging

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from workers.telemetry.logfilter import RepeatFilter, TraceFormatter, TraceIds, install


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_repeated_message_passes_once_per_window_then_reports_what_it_held() -> None:
    clock = Clock()
    f = RepeatFilter(window_s=10.0, clock=clock)
    msg = "Unable connect to node with id %s: %s"
    shown = [f.filter(record("aiokafka.client", msg, 1, f"refused {i}")) for i in range(2500)]
    assert shown[0] and not any(shown[1:])
    clock.now = 10.5
    later = record("aiokafka.client", msg, 1, "refused again")
    assert f.filter(later)
    assert later.getMessage() == (
        "Unable connect to node with id 1: refused again [2499 more like this in the last 10 s]"
    )
    clock.now = 21.0
    quiet = record("aiokafka.client", msg, 1, "once more")
    assert f.filter(quiet) and quiet.getMessage().endswith("once more")  # nothing was held


def test_other_messages_levels_and_loggers_are_independent() -> None:
    f = RepeatFilter(window_s=10.0, clock=Clock())
    assert f.filter(record("aiokafka.client", "Unable to update metadata from %s", [1]))
    assert f.filter(record("aiokafka.client", "Unable connect to node with id %s", 1))
    assert f.filter(record("aiokafka.client", "Unable connect to node with id %s", 1, level=30))
    assert f.filter(record("aiokafka.producer.sender", "Unable connect to node with id %s", 1))
    for _ in range(3):  # our own loggers are never held back
        assert f.filter(record("streams.engine", "processing session reset after %s", "x"))
    assert not f.filter(record("aiokafka.client", "Unable to update metadata from %s", [1]))


def test_log_lines_carry_the_current_span_ids_as_text_or_json() -> None:
    span = TracerProvider(shutdown_on_exit=False).get_tracer("t").start_span("decode")
    ctx = span.get_span_context()
    ids = f"trace_id={ctx.trace_id:032x} span_id={ctx.span_id:016x}"
    text = TraceFormatter(logging.Formatter("%(levelname)s %(message)s"))
    outside = record("inferstream", "hello %s", "there", level=logging.INFO)
    assert TraceIds().filter(outside) and text.format(outside) == "INFO hello there"
    with trace.use_span(span):
        inside = record("inferstream", "hello %s", "there", level=logging.INFO)
        TraceIds().filter(inside)
    assert text.format(inside) == f"INFO hello there {ids}"
    line = orjson.loads(TraceFormatter(json_lines=True).format(inside))
    assert line["message"] == "hello there" and line["level"] == "INFO"
    assert f"trace_id={line['trace_id']} span_id={line['span_id']}" == ids
    assert orjson.loads(TraceFormatter(json_lines=True).format(outside))["trace_id"] == ""


def test_install_puts_the_filters_and_the_formatter_on_the_root_handlers() -> None:
    handler, root = logging.StreamHandler(io.StringIO()), logging.getLogger()
    root.addHandler(handler)
    try:
        install(json_lines=True)
        install(json_lines=True)  # once
        assert [type(f) for f in handler.filters] == [RepeatFilter, TraceIds]
        assert isinstance(handler.formatter, TraceFormatter) and handler.formatter.json_lines
    finally:
        root.removeHandler(handler)
