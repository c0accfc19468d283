"""A built-in, real implementation of the billing API and a checkout page."""
from .server import Sandbox
from .state import PLANS, SandboxState

__all__ = ["Sandbox", "SandboxState", "PLANS"]
