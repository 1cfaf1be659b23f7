"""Liveness and readiness of a worker, from named checks the worker keeps up to date.

The worker ``set``s each check as it learns (``kafka``: the consumer is connected and assigned;
``triton``: the model reports ready; ``tables``: the tables have recovered), and may ``beat`` from
its event loop. ``live()`` answers "should this process be restarted?": no, unless a fatal error was
declared or the loop stopped beating for ``stall_s``. ``ready()`` answers "should it get work?":
every required check has been set, is ok and is fresh (set within its ``max_age_s``; ``None``:
never stale). Both return ``(ok, body)`` with a JSON-able body; serve them with 200 / 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED = ("kafka", "triton", "tables")


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str
    at: float  # monotonic clock: freshness
    wall: float  # epoch seconds: what the body reports


class Health:
    def __init__(
        self,
        required: Iterable[str] = REQUIRED,
        *,
        max_age_s: float | None = 30.0,
        max_age_by_check: Mapping[str, float | None] | None = None,
        stall_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.required = tuple(required)
        self.max_age_s = max_age_s
        self.max_age_by_check = dict(max_age_by_check or {"tables": None})
        self.stall_s = stall_s
        self.clock = clock
        self.wall_clock = wall_clock
        self._checks: dict[str, Check] = {}
        self._fatal: str | None = None
        self._beat: float | None = None
        self._started = clock()

    def set(self, name: str, ok: bool, detail: str = "") -> None:
        self._checks[name] = Check(ok, detail, self.clock(), self.wall_clock())

    def fatal(self, detail: str) -> None:
        """The process cannot recover (``live()`` turns false for good)."""
        self._fatal = detail

    def beat(self) -> None:
        """The event loop is turning (call from a periodic task)."""
        self._beat = self.clock()

    def live(self) -> tuple[bool, dict[str, Any]]:
        now = self.clock()
        body: dict[str, Any] = {"status": "ok", "uptime_s": round(now - self._started, 3)}
        if self._beat is not None:
            body["last_beat_s"] = round(now - self._beat, 3)
        ok = True
        if self._fatal is not None:
            ok, body["fatal"] = False, self._fatal
        elif (
            self.stall_s is not None and self._beat is not None and now - self._beat > self.stall_s
        ):
            ok, body["stalled"] = False, True
        body["status"] = "ok" if ok else "fail"
        return ok, body

    def ready(self) -> tuple[bool, dict[str, Any]]:
        now = self.clock()
        checks: dict[str, Any] = {}
        ok = self._fatal is None
        for name in dict.fromkeys((*self.required, *self._checks)):
            check = self._checks.get(name)
            if check is None:
                checks[name] = {"ok": False, "detail": "not reported yet", "fresh": False}
                ok = ok and name not in self.required
                continue
            age = now - check.at
            limit = self.max_age_by_check.get(name, self.max_age_s)
            fresh = limit is None or age <= limit
            checks[name] = {
                "ok": check.ok,
                "detail": check.detail,
                "fresh": fresh,
                "age_s": round(age, 3),
                "updated_at": check.wall,
            }
            if name in self.required:
                ok = ok and check.ok and fresh
        body: dict[str, Any] = {"status": "ok" if ok else "fail", "checks": checks}
        if self._fatal is not None:
            body["fatal"] = self._fatal
        return ok, body
