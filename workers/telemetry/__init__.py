"""Telemetry for the worker: tracing (OpenTelemetry), Prometheus metrics, per-event cost and the
analytics record, health checks, and a reader of the metrics exposition for ``inferstream top``.

Every piece takes its sink in its constructor (a ``TracerProvider``, a ``CollectorRegistry``, a
clock); nothing is registered globally and nothing runs at import time.
"""
