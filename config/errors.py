"""The `LookoutError` family.

Every error a caller may want to handle is one of these, and each carries what caused it
(the request field, the camera or unit id) so that an API response or a log line can name it.
The API maps `status` to the HTTP status code; the CLI prints `str(error)`.
"""

from __future__ import annotations

from typing import Any


class LookoutError(Exception):
    """Base of all errors Lookout raises on purpose."""

    status: int = 500

    def __init__(self, message: str, *, field: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.context = {k: v for k, v in context.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.message}
        if self.field:
            body["field"] = self.field
        body.update(self.context)
        return body


class ConfigError(LookoutError):
    """A setting is missing or invalid; raised at start, naming the key."""


class InvalidInput(LookoutError):
    """A value a caller gave is wrong (422)."""

    status = 422


class NotFound(LookoutError):
    """The thing does not exist, or is outside the caller's unit scope (404)."""

    status = 404


class Forbidden(LookoutError):
    """The caller's role or unit scope does not allow this (403)."""

    status = 403


class Unauthorized(LookoutError):
    """No valid bearer token (401)."""

    status = 401


class Conflict(LookoutError):
    """The request clashes with the current state (409)."""

    status = 409


class Unavailable(LookoutError):
    """A backing service (database, Redis) cannot be reached (503)."""

    status = 503


class DeviceError(LookoutError):
    """A camera or other device on the network answered wrongly, or could not be reached (502)."""

    status = 502


class DeviceTimeout(DeviceError):
    """A device did not answer in time (504)."""

    status = 504


class DeviceAuthFailed(InvalidInput):
    """A device refused the credentials it was given (422: the caller's input is wrong, not
    their Lookout login, so not 401)."""
