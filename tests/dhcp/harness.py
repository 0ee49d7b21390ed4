"""Virtual time for the DHCP machines: a client and a server joined by a perfect (or filtered)
wire, time jumping from deadline to deadline."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from usernet.proto.dhcp_client import Bind, ClientConfig, DhcpClient, Probe, Send, Unbind
from usernet.proto.dhcp_server import DhcpServer, ProbeAddress, Reply, ServerConfig
from usernet.wire import dhcp
from usernet.wire.ipv4 import addr

SERVER_IP = addr("10.9.0.1")


def mac(n: int) -> bytes:
    return bytes([0x02, 0, 0, 0, n >> 8, n & 0xFF])


def server_config(**kw: object) -> ServerConfig:
    options: dict[str, object] = {"server_ip": SERVER_IP, "prefix": 24, "pool_start": addr("10.9.0.100"),
                                  "pool_end": addr("10.9.0.119"), "router": SERVER_IP, "dns": [SERVER_IP],
                                  "domain": "lan", "lease_time": 120}
    options.update(kw)
    return ServerConfig(**options)  # type: ignore[arg-type]


@dataclass
class Sent:
    time: float
    client: int
    kind: int
    dst: int
    message: dhcp.DhcpMessage


@dataclass
class Net:
    """Clients and (optionally several) servers on one wire."""

    servers: list[DhcpServer]
    clients: list[DhcpClient] = field(default_factory=list)
    now: float = 0.0
    log: list[Sent] = field(default_factory=list)               # every client message
    replies: list[tuple[float, Reply, dhcp.DhcpMessage]] = field(default_factory=list)
    events: list[tuple[float, int, object]] = field(default_factory=list)  # Bind/Unbind per client
    probes: list[tuple[float, str, int]] = field(default_factory=list)
    # Answers an ARP probe for an address (returns the MAC that holds it, or None)
    arp_holder: Callable[[int], bytes | None] = lambda address: None
    drop_to_server: Callable[[Sent], bool] = lambda sent: False
    drop_to_client: Callable[[dhcp.DhcpMessage], bool] = lambda message: False

    def add_client(self, n: int, seed: int | None = None, **config: object) -> DhcpClient:
        requested = config.pop("requested", None)
        config.setdefault("probe", True)
        client = DhcpClient(mac(n), random.Random(seed if seed is not None else n), ClientConfig(**config),  # type: ignore[arg-type]
                            requested=requested)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    def step(self) -> None:
        """Deliver everything pending at self.now, repeatedly, until quiet."""
        for _ in range(10000):
            moved = False
            for server in self.servers:
                if (d := server.next_deadline()) is not None and d <= self.now:
                    server.poll(self.now)
            for index, client in enumerate(self.clients):
                if (d := client.next_deadline()) is not None and d <= self.now:
                    client.poll(self.now)
                for action in client.take():
                    moved = True
                    self._client_action(index, client, action)
            for server in self.servers:
                for action in server.take():
                    moved = True
                    self._server_action(server, action)
            if not moved:
                return
        raise AssertionError("no quiet point")

    def _client_action(self, index: int, client: DhcpClient, action: object) -> None:
        if isinstance(action, Send):
            message = dhcp.parse(action.payload)
            sent = Sent(self.now, index, message.message_type, action.dst, message)
            self.log.append(sent)
            if self.drop_to_server(sent):
                return
            for server in self.servers:
                if action.dst in (0xFFFFFFFF, server.config.server_ip):
                    server.receive(action.payload, self.now)
        elif isinstance(action, Probe):
            self.probes.append((self.now, "client", action.address))
            holder = self.arp_holder(action.address)
            if holder is not None:
                client.arp_seen(action.address, holder, 0, 2, self.now)
        elif isinstance(action, (Bind, Unbind)):
            self.events.append((self.now, index, action))

    def _server_action(self, server: DhcpServer, action: object) -> None:
        if isinstance(action, Reply):
            message = dhcp.parse(action.payload)
            self.replies.append((self.now, action, message))
            if self.drop_to_client(message):
                return
            for client in self.clients:
                if message.chaddr == client.mac:
                    client.receive(action.payload, self.now)
        elif isinstance(action, ProbeAddress):
            self.probes.append((self.now, "server", action.address))
            holder = self.arp_holder(action.address)
            if holder is not None:
                server.arp_seen(action.address, holder, 0, 2, self.now)

    def run_until(self, end: float) -> None:
        while True:
            self.step()
            deadlines = [d for m in [*self.servers, *self.clients] if (d := m.next_deadline()) is not None]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > end:
                self.now = end
                self.step()
                return
            self.now = max(nxt, self.now)

    def sent(self, kind: int, client: int | None = None) -> list[Sent]:
        return [s for s in self.log if s.kind == kind and (client is None or s.client == client)]
