"""The routing table: longest-prefix match over connected, static and default routes.

RFC 1812 5.2.4.3 orders the choice: the most specific prefix first, then the lowest metric.
Connected routes appear and disappear with the interface addresses that imply them; static and
default routes name a gateway, which must be on a connected subnet when the route is added
(as ``ip route add`` insists). Lookups are cached per destination until the table changes, so
the per-packet cost is one dictionary hit.
"""

from __future__ import annotations

import errno
from typing import Any

from usernet.errors import os_error
from usernet.stack.interface import Interface, mask
from usernet.wire import ipv4

CONNECTED = "connected"
STATIC = "static"
DEFAULT = "default"
_CACHE_MAX = 4096  # destinations remembered; the cache is cleared when full (and on any change)


class Route:
    __slots__ = ("network", "prefix", "netmask", "gateway", "iface", "metric", "kind", "source")

    def __init__(self, network: int, prefix: int, gateway: int, iface: Interface, metric: int, kind: str,
                 source: int = 0) -> None:
        self.netmask = mask(prefix)
        self.network = network & self.netmask
        self.prefix = prefix
        self.gateway = gateway  # 0: on-link, the destination itself is the next hop
        self.iface = iface
        self.metric = metric
        self.kind = kind
        self.source = source  # preferred source (connected routes: the address that made them)

    def next_hop(self, dst: int) -> int:
        return self.gateway or dst

    def info(self) -> dict[str, Any]:
        """What ``ip route`` shows, as plain values."""
        return {"destination": "default" if not self.prefix and self.kind != CONNECTED
                else f"{ipv4.ntoa(self.network)}/{self.prefix}",
                "via": ipv4.ntoa(self.gateway) if self.gateway else None, "dev": self.iface.name,
                "metric": self.metric, "kind": self.kind,
                "src": ipv4.ntoa(self.source) if self.source else None}

    def __repr__(self) -> str:
        info = self.info()
        via = f" via {info['via']}" if info["via"] else ""
        return f"<Route {info['destination']}{via} dev {info['dev']} metric {self.metric} {self.kind}>"


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []  # kept sorted: longest prefix, then lowest metric
        self._cache: dict[int, Route | None] = {}

    def _changed(self) -> None:
        self.routes.sort(key=lambda r: (-r.prefix, r.metric))
        self._cache.clear()

    def lookup(self, dst: int) -> Route | None:
        try:
            return self._cache[dst]
        except KeyError:
            pass
        found = None
        for route in self.routes:
            if dst & route.netmask == route.network:
                found = route
                break
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[dst] = found
        return found

    def add(self, network: int, prefix: int, gateway: int = 0, iface: Interface | None = None, metric: int = 0,
            kind: str = STATIC, source: int = 0) -> Route:
        """Add a route; a gateway without *iface* is resolved through the connected routes."""
        if iface is None:
            if not gateway:
                raise ValueError("a route needs a gateway or an interface")
            on_link = self.lookup(gateway)
            if on_link is None or on_link.gateway:
                raise os_error(errno.ENETUNREACH, f"gateway {ipv4.ntoa(gateway)} is not on a connected network")
            iface = on_link.iface
        for route in self.routes:
            if (route.network, route.prefix, route.metric) == (network & mask(prefix), prefix, metric) and \
                    route.kind == kind and route.iface is iface and kind != CONNECTED:
                raise os_error(errno.EEXIST, "route exists")
        route = Route(network, prefix, gateway, iface, metric, kind, source)
        self.routes.append(route)
        self._changed()
        return route

    def remove(self, predicate: Any) -> list[Route]:
        """Remove the routes *predicate(route)* selects; returns them."""
        gone = [r for r in self.routes if predicate(r)]
        if gone:
            self.routes = [r for r in self.routes if not predicate(r)]
            self._changed()
        return gone

    def default_gateway(self) -> int:
        for route in self.routes:
            if route.prefix == 0 and route.gateway:
                return route.gateway
        return 0
