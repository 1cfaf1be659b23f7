from collections.abc import Callable, Sequence

from workers.telemetry.spans import Child, SpanData

def event(
    span: SpanData, children: Sequence[Child], new_id: Callable[[], int], /
) -> bytes | None: ...
