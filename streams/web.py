"""Pages on the worker's Faust web port: Prometheus metrics and health for probes."""

from __future__ import annotations

from typing import Any

from workers.telemetry.health import Health
from workers.telemetry.metrics import CONTENT_TYPE, Metrics


def register(app: Any, metrics: Metrics, health: Health) -> None:
    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; the exposition format is ASCII anyway
        return web.bytes(
            metrics.exposition(), content_type=CONTENT_TYPE.split(";")[0] + "; version=0.0.4"
        )

    @app.page("/health/live")  # type: ignore[untyped-decorator]
    async def live(web: Any, request: Any) -> Any:
        ok, body = health.live()
        return web.json(body, status=200 if ok else 503)

    @app.page("/health/ready")  # type: ignore[untyped-decorator]
    async def ready(web: Any, request: Any) -> Any:
        ok, body = health.ready()
        return web.json(body, status=200 if ok else 503)
