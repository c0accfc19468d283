"""One error tree for everything that can go wrong talking to the billing API.

Every failure the client can meet -- an error envelope, a body that is not
what the contract promises, a refused connection, a timeout -- arrives as a
``GigaError`` so callers handle one family and always have a ``request_id``
slot to show users (it is ``None`` where the upstream never gave one).
"""
from __future__ import annotations


class GigaError(Exception):
    """Base of the tree: status, code, message, hint and requestId."""

    #: transient faults are worth retrying (GET only) and may show stale figures
    transient = False

    def __init__(self, message, *, status=None, code=None, hint=None,
                 request_id=None, retry_after=None, never_sent=False):
        super().__init__(message)
        #: True when the request provably never left (nothing can have happened)
        self.never_sent = never_sent
        self.message = message
        self.status = status
        self.code = code
        self.hint = hint
        self.request_id = request_id
        self.retry_after = retry_after

    def __repr__(self):
        return (f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
                f"message={self.message!r}, request_id={self.request_id!r})")

    @staticmethod
    def from_status(status, code, message, hint=None, request_id=None,
                    retry_after=None) -> "GigaError":
        """Map an HTTP status and error code to the matching subclass."""
        if status == 401 or code in ("UNAUTHORIZED", "INVALID_API_KEY"):
            cls = AuthenticationError
        elif status == 403:
            cls = PermissionDenied
        elif status == 429:
            cls = RateLimited
        elif status == 402:
            cls = InsufficientCredits
        elif status == 404:
            cls = NotFound
        elif status is not None and 400 <= status < 500:
            cls = InvalidRequest
        else:
            cls = ServerError
        return cls(message, status=status, code=code, hint=hint,
                   request_id=request_id, retry_after=retry_after)


class AuthenticationError(GigaError):
    """401: the API key is missing, malformed or revoked."""


class PermissionDenied(GigaError):
    """403: the key lacks permission, or the plan does not allow it."""


class InvalidRequest(GigaError):
    """400 and other 4xx the dashboard should never have sent."""


class InsufficientCredits(GigaError):
    """402: the balance is too low for the action."""


class NotFound(GigaError):
    """404: no such resource."""


class RateLimited(GigaError):
    """429: over the per-key limit; ``retry_after`` says for how long (seconds)."""

    transient = False


class ServerError(GigaError):
    """5xx: the billing service failed."""

    transient = True


class BadResponse(GigaError):
    """The upstream answered, but not with what the contract promises."""

    transient = True


class ConnectionFailed(GigaError):
    """No answer could be had: refused, reset or unreachable."""

    transient = True


class Timeout(GigaError):
    """The upstream did not answer within the deadline."""

    transient = True

