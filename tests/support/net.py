"""Network helpers for tests."""
import socket


def closed_port() -> int:
    """A loopback port nothing listens on, so connecting to it is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
