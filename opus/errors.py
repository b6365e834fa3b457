"""One exception hierarchy for the whole application.

Every error a client can cause carries its HTTP status; the server translates it into a response
in one place (``opus.server.errors``).  Anything else that escapes is a server fault (500).
"""

from __future__ import annotations


class OpusError(Exception):
    """Base class: an error with an HTTP status and a message meant for the client."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(OpusError):
    """Malformed input: a value that cannot be parsed or is out of range (400)."""

    status = 400


class Unauthorized(OpusError):
    """No or wrong credentials (401)."""

    status = 401


class Forbidden(OpusError):
    """A request that is illegal in the job's current state, or not allowed to this caller (403)."""

    status = 403


class NotFound(OpusError):
    """An unknown job, job definition, or child resource (404)."""

    status = 404


class MethodNotAllowed(OpusError):
    """The resource exists but does not accept this method (405)."""

    status = 405


class Conflict(OpusError):
    """A request that contradicts the current state, e.g. a version that already exists (409)."""

    status = 409


class Gone(OpusError):
    """A resource that existed and was removed for good, e.g. the file of a deleted job's entity (410)."""

    status = 410


class PayloadTooLarge(OpusError):
    """A request body or upload larger than the configured limit (413)."""

    status = 413


class TooManyRequests(OpusError):
    """Too many failed sign-ins for a user name or from a client address (429, with Retry-After)."""

    status = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(OpusError):
    """The service cannot handle the request now (503)."""

    status = 503


class IllegalTransition(Forbidden):
    """A phase change that the UWS state machine does not allow from the current phase."""


class ConfigurationError(Exception):
    """The settings or a job definition are invalid; raised at start-up, never per request."""
