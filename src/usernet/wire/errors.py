class ParseError(ValueError):
    """A frame or header is malformed. The stack drops and counts it; it never escapes ``receive``."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # A short, stable token used as a counter name (e.g. "ipv4.bad_checksum").
        self.reason = reason
