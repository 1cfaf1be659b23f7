"""Diagnostic modes of ``bench.tracing_e2e``, never used in production: a worker started with
this folder on ``PYTHONPATH`` and ``INFERSTREAM_BENCH_PROBE`` set splits what tracing costs it.

* ``record-only``: spans are recorded as usual, but the OTLP sink keeps nothing (no encoding, no
  export); the pipeline still counts them exported.
* ``no-send``: spans are recorded and encoded, each batch is wrapped into its request, and
  nothing is sent.

``INFERSTREAM_BENCH_SWITCH`` set (``bench.tracing_crossover``): the worker's tracing can be
switched off and on again while it runs, by real-time signals (``SWITCH_ON``, ``SWITCH_OFF``).
Off, its ``KafkaTracing`` has no pipeline: the very path of a worker started with tracing off
(no span, headers passed through); its idle span thread and OTLP channel stay.

Python imports ``sitecustomize`` at start from the first folder on ``sys.path`` that has one.
"""

import os
import signal
import sys
from pathlib import Path

SWITCH_ON, SWITCH_OFF = signal.SIGRTMIN + 1, signal.SIGRTMIN + 2
_PROBE = os.environ.get("INFERSTREAM_BENCH_PROBE")
if _PROBE in ("record-only", "no-send"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository
    from workers.telemetry import otlp_export as otlp

    _init = otlp.OtlpSink.__init__

    def _probed(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        if _PROBE == "record-only":
            self.prepare = lambda span: b""
            self.prepare_event = lambda span, children: b""

        def export(spans):
            self.encoder.wrap(spans)  # the request is built, never sent
            return True

        self.export = export

    otlp.OtlpSink.__init__ = _probed
elif _PROBE:
    raise SystemExit(f"INFERSTREAM_BENCH_PROBE={_PROBE!r}: expected record-only or no-send")

if os.environ.get("INFERSTREAM_BENCH_SWITCH"):
    _found: list = []  # the worker's KafkaTracing, once found

    def _switch(signum, frame):
        if not _found:  # between rounds, idle: one scan of the heap
            import gc

            from workers.telemetry.tracing import KafkaTracing

            _found.extend((o, o.pipeline) for o in gc.get_objects() if isinstance(o, KafkaTracing))
        for tracing, pipeline in _found:
            tracing.pipeline = pipeline if signum == SWITCH_ON else None

    signal.signal(SWITCH_ON, _switch)
    signal.signal(SWITCH_OFF, _switch)
