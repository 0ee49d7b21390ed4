"""The DNS responder's driver (``usernet up --serve dns:PORT[,record=NAME=IP,...,hosts=FILE,forward=IP]``)
over a host's UDP and TCP sockets; the machine is :mod:`usernet.proto.dns_server`.

One thread serves UDP, one accepts TCP (each connection on its own thread, RFC 7766 framing, several
queries per connection, an idle timeout); forwarded queries run on worker threads, at most
``MAX_FORWARDS`` at once (beyond that a query is dropped and counted as ``dns.forward_busy``).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
import socket as _socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from usernet.api.resolver import read_message, tcp_exchange
from usernet.proto.dns_client import parse_hosts
from usernet.proto.dns_server import DnsResponder, Forward, ResponderConfig
from usernet.wire import dns

if TYPE_CHECKING:
    from usernet.api.host import Host

log = logging.getLogger("usernet.dns")

MAX_FORWARDS = 32
TCP_IDLE = 10.0          # seconds a TCP client may stay silent between queries (RFC 7766 6.2.3)
FORWARD_TIMEOUT = 2.0    # per upstream try; two tries


def parse_spec(rest: str) -> dict[str, Any]:
    """``PORT[,record=NAME=IP,...,hosts=FILE,forward=IP,domain=NAME]`` to serve_dns's keyword
    arguments; ValueError with a one-line reason."""
    port_text, _, options = rest.partition(",")
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError("expected dns:PORT with PORT 1..65535")
    spec: dict[str, Any] = {"port": int(port_text), "records": {}, "hosts_files": [], "forward": None,
                            "domain": None}
    for option in filter(None, options.split(",")):
        key, eq, value = option.partition("=")
        if not eq or not value:
            raise ValueError(f"option {option!r}: expected KEY=VALUE")
        if key == "record":
            name, eq, address = value.partition("=")
            try:
                dns.encode_name(name)
                text = str(ipaddress.ip_address(address))
            except ValueError:
                raise ValueError(f"record={value}: expected record=NAME=IP") from None
            if not name or not eq:
                raise ValueError(f"record={value}: expected record=NAME=IP")
            spec["records"].setdefault(name, []).append(text)
        elif key == "hosts":
            try:
                with open(value, encoding="utf-8") as f:
                    f.read()
            except OSError as err:
                raise ValueError(f"hosts={value}: {err.strerror}") from None
            spec["hosts_files"].append(value)
        elif key == "forward":
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ValueError(f"forward={value}: not an IPv4 address") from None
            spec["forward"] = value
        elif key == "domain":
            try:
                dns.encode_name(value)
            except ValueError as err:
                raise ValueError(f"domain={value}: {err}") from None
            spec["domain"] = value
        else:
            raise ValueError(f"unknown option {key!r} (record=NAME=IP, hosts=FILE, forward=IP, domain=NAME)")
    return spec


def serve_dns(host: Host, port: int = 53, records: Mapping[str, str | Iterable[str]] | None = None,
              hosts_files: Iterable[str] = (), forward: str | None = None, domain: str | None = None,
              dynamic: Callable[[], Mapping[str, str]] | None = None,
              config: ResponderConfig | None = None) -> DnsServer:
    """Serve DNS on *port* (UDP and TCP) until the host closes; returns the running server."""
    table: dict[str, list[str]] = {}
    for name, value in (records or {}).items():
        table.setdefault(name, []).extend([value] if isinstance(value, str) else value)
    for path in hosts_files:
        with open(path, encoding="utf-8") as f:
            for name, addresses in parse_hosts(f.read()).items():
                table.setdefault(name, []).extend(addresses)
    server = DnsServer(host, port, table, forward=forward, domain=domain, dynamic=dynamic, config=config)
    server.start()
    return server


class DnsServer:
    def __init__(self, host: Host, port: int, records: Mapping[str, list[str]], *, forward: str | None,
                 domain: str | None, dynamic: Callable[[], Mapping[str, str]] | None,
                 config: ResponderConfig | None) -> None:
        self.host = host
        self.port = port
        self.upstream = forward
        self.responder = DnsResponder(records, dynamic=dynamic, domain=domain, forward=forward is not None,
                                      config=config, counters=host.stack.counters, trusted=self._on_link)
        self._stopped = threading.Event()
        self._forwards = threading.BoundedSemaphore(MAX_FORWARDS)
        self._rng = random.Random(host.rng.getrandbits(64))
        self._threads: list[threading.Thread] = []
        self.udp: Any = None
        self.tcp: Any = None

    def _on_link(self, address: str) -> bool:
        """A client on one of our connected subnets (or the loopback) is known: full UDP answers."""
        try:
            value = int(ipaddress.IPv4Address(address))
        except ValueError:
            return False
        if value >> 24 == 127:
            return True
        for route in self.host.routes():
            if route.get("kind") != "connected" and route.get("via"):
                continue
            try:
                network = ipaddress.IPv4Network(route["destination"])
            except (KeyError, ValueError):
                continue
            if network.prefixlen > 0 and ipaddress.IPv4Address(value) in network:
                return True
        return False

    def start(self) -> None:
        host = self.host
        self.udp = host.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        self.udp.bind(("", self.port))
        self.tcp = host.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        self.tcp.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        self.tcp.bind(("", self.port))
        self.tcp.listen(64)
        for target, name in ((self._udp_loop, "udp"), (self._tcp_loop, "tcp")):
            thread = threading.Thread(target=target, name=f"usernet-dns-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        host.add_service(self.stop)

    def stop(self) -> None:
        self._stopped.set()
        for sock in (self.udp, self.tcp):
            if sock is not None:
                sock.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _count(self, name: str) -> None:
        with self.host.lock:
            self.host.stack.counters[name] += 1

    def _handle(self, payload: bytes, client: str, transport: str) -> bytes | Forward | None:
        with self.host.lock:  # the counters are the stack's
            return self.responder.handle(payload, client, time.monotonic(), transport)

    # ------------------------------------------------------------- UDP

    def _udp_loop(self) -> None:
        sock = self.udp
        sock.settimeout(0.5)
        while not self._stopped.is_set():
            try:
                payload, (client, sport) = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                continue
            result = self._handle(payload, client, "udp")
            if isinstance(result, Forward):
                self._start_forward(result, functools.partial(self._udp_reply, client=client, sport=sport))
            elif result is not None:
                self._udp_reply(result, client, sport)

    def _udp_reply(self, out: bytes | None, client: str, sport: int) -> None:
        if out is None:
            return
        try:
            self.udp.sendto(out, (client, sport))
        except OSError as err:
            log.debug("DNS reply to %s:%d failed: %s", client, sport, err)

    # ------------------------------------------------------------- TCP

    def _tcp_loop(self) -> None:
        listener = self.tcp
        listener.settimeout(0.5)
        while not self._stopped.is_set():
            try:
                conn, (client, _) = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopped.is_set():
                    return
                continue
            threading.Thread(target=self._tcp_conn, args=(conn, client), daemon=True, name="usernet-dns-conn").start()

    def _tcp_conn(self, conn: Any, client: str) -> None:
        with conn:
            try:
                while not self._stopped.is_set():
                    payload = read_message(conn, time.monotonic() + TCP_IDLE)
                    if payload is None:
                        return
                    result = self._handle(payload, client, "tcp")
                    if isinstance(result, Forward):
                        done = threading.Event()
                        box: list[bytes | None] = [None]

                        def reply(out: bytes | None, box: list[bytes | None] = box, done: threading.Event = done) \
                                -> None:
                            box[0] = out
                            done.set()

                        if not self._start_forward(result, reply):
                            return
                        done.wait(2 * FORWARD_TIMEOUT + 1)
                        result = box[0]
                    if result is None:
                        return
                    conn.settimeout(TCP_IDLE)
                    conn.sendall(struct.pack("!H", len(result)) + result)
            except OSError as err:
                log.debug("DNS TCP connection from %s ended: %s", client, err)

    # ------------------------------------------------------------- forwarding

    def _start_forward(self, forward: Forward, reply: Callable[[bytes | None], None]) -> bool:
        if not self._forwards.acquire(blocking=False):
            self._count("dns.forward_busy")
            return False

        def run() -> None:
            try:
                upstream = self._ask_upstream(forward)
                with self.host.lock:
                    out = self.responder.relay(forward, upstream)
                reply(out)
            except Exception:  # a worker must never die silently with the semaphore held
                log.exception("forwarding a DNS query")
            finally:
                self._forwards.release()

        threading.Thread(target=run, daemon=True, name="usernet-dns-forward").start()
        return True

    def _ask_upstream(self, forward: Forward) -> bytes | None:
        question = forward.query.questions[0]
        edns = forward.query.edns is not None
        for _ in range(2):
            ident = self._rng.getrandbits(16)
            payload = dns.query(ident, question.name, question.qtype, recursion=forward.query.rd,
                                edns=dns.EDNS_UDP_SIZE if edns else None)
            reply = self._upstream_udp(payload, ident)
            if reply is None:
                continue
            if dns.parse(reply).tc:
                return self._upstream_tcp(payload)
            return reply
        return None

    def _upstream_udp(self, payload: bytes, ident: int) -> bytes | None:
        assert self.upstream is not None
        with self.host.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((self.upstream, dns.PORT))
                sock.send(payload)
            except OSError:
                return None
            end = time.monotonic() + FORWARD_TIMEOUT
            while (remaining := end - time.monotonic()) > 0:
                sock.settimeout(remaining)
                try:
                    data = sock.recv(65535)
                except OSError:
                    return None
                try:
                    if dns.parse(data).id == ident:
                        return data
                except Exception:
                    continue
        return None

    def _upstream_tcp(self, payload: bytes) -> bytes | None:
        assert self.upstream is not None
        return tcp_exchange(self.host, self.upstream, dns.PORT, payload, FORWARD_TIMEOUT)
