"""Diagnostic modes of ``bench.tracing_e2e``, never used in production: a worker started with
this folder on ``PYTHONPATH`` and ``INFERSTREAM_BENCH_PROBE`` set splits what tracing costs it.

* ``record-only``: spans are recorded as usual, but the OTLP sink keeps nothing (no encoding, no
  export); the pipeline still counts them exported.
* ``no-send``: spans are recorded and encoded, each batch is wrapped into its request, and
  nothing is sent.

Python imports ``sitecustomize`` at start from the first folder on ``sys.path`` that has one.
"""

import os
import sys
from pathlib import Path

_PROBE = os.environ.get("INFERSTREAM_BENCH_PROBE")
if _PROBE in ("record-only", "no-send"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository
    from workers.telemetry import otlp

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
