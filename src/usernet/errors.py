"""The one way usernet makes the socket module's exceptions."""

from __future__ import annotations

import os


def os_error(code: int, message: str | None = None) -> OSError:
    """The exception the socket module raises for *code*. ``OSError`` itself picks the subclass
    from the errno (ECONNREFUSED gives ConnectionRefusedError, EAGAIN BlockingIOError, ...)."""
    return OSError(code, message or os.strerror(code))
