"""Exceptions: the farm refused a request (a client bug, not the model's failure), or it could not
be reached in time after every retry."""

from __future__ import annotations


class ArmGymError(Exception):
    """Base class of everything this package raises."""


class APIError(ArmGymError):
    """The farm answered with an error status: 4xx (the request is wrong; retrying cannot help)
    or a 429/5xx that outlasted the retry policy."""

    def __init__(self, status: int, detail: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {detail}".strip())
        self.status, self.detail, self.method, self.path = status, detail, method, path


class FarmUnavailable(ArmGymError):
    """No answer (connection refused, timed out) after every retry."""


class InfraErrorResult(ArmGymError):
    """An attempt ended in `infra_error` and the caller asked for an exception instead of
    dropping it (adapters with on_infra="raise")."""
