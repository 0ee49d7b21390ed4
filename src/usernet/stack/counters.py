"""Per-layer counters, like ``netstat -s``: a flat dict of dotted names ("ipv4.rx", "udp.bad_checksum")."""

from __future__ import annotations

from collections import defaultdict


class Counters(defaultdict[str, int]):
    """Missing names read as 0, so callers can assert on counters that never fired."""

    def __init__(self) -> None:
        super().__init__(int)

    def format(self) -> str:
        """Group by layer prefix, one ``name: value`` line each, layers in a stable order."""
        groups: dict[str, list[tuple[str, int]]] = {}
        for name in sorted(self):
            value = self[name]
            if not value:
                continue
            layer, _, rest = name.partition(".")
            groups.setdefault(layer, []).append((rest or layer, value))
        lines = []
        for layer, items in groups.items():
            lines.append(f"{layer}:")
            lines.extend(f"    {value} {rest.replace('_', ' ')}" for rest, value in items)
        return "\n".join(lines)
