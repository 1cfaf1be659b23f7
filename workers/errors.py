"""One error hierarchy. ``retriable`` is a class attribute (as in aiokafka), never string matching:
retriable errors back off and retry; the rest become dead-letter records with ``reason``."""

from __future__ import annotations

from typing import ClassVar


class InferstreamError(Exception):
    retriable: ClassVar[bool] = False
    reason: ClassVar[str] = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidEvent(InferstreamError):
    """An input event that can never be processed; ``reason`` is a stable code."""

    retriable = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.code = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class InferenceUnavailable(InferstreamError):
    """The inference server is down, overloaded or slow: try again later."""

    retriable = True
    reason = "inference_unavailable"


class InferenceRejected(InferstreamError):
    """The inference server refused the request itself: retrying cannot help."""

    retriable = False
    reason = "inference_rejected"


class OutputTooLarge(InferstreamError):
    """A record the worker would produce is larger than the topic accepts."""

    retriable = False
    reason = "output_too_large"
