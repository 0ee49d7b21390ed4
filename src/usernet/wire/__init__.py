"""Packet views and builders: pure functions over bytes, knowing nothing above them.

Parsers check lengths once and raise :class:`ParseError` (and only that) on malformed input;
builders write headers into caller-provided buffers with ``struct.pack_into``.
"""

from usernet.wire.errors import ParseError

__all__ = ["ParseError"]
