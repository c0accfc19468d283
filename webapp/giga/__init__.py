"""The WithGiga billing API: a typed client and its one error tree."""
from .client import Billing, Checkout, GigaClient, Plan
from .errors import (AuthenticationError, BadResponse, ConnectionFailed, GigaError,
                     InsufficientCredits, InvalidRequest, NotFound, PermissionDenied,
                     RateLimited, ServerError, Timeout)

__all__ = [
    "Billing", "Checkout", "GigaClient", "Plan", "GigaError", "AuthenticationError",
    "BadResponse", "ConnectionFailed", "InsufficientCredits", "InvalidRequest",
    "NotFound", "PermissionDenied", "RateLimited", "ServerError", "Timeout",
]
