"""The ``usernet`` command line tool.

Exit codes: 0 success (also when SIGTERM/SIGHUP, or Ctrl-C for up and ping, end a command), 1 the
network said no (no reply, refused, unreachable) or an internal error, 2 bad input (one line on stderr,
checked before anything is opened when the system is not needed for it), 130 Ctrl-C during start-up or
in nc, 141 stdout closed under us (``usernet ping ... | head -1``).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import logging
import math
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a program killed by SIGPIPE
MAX_PING_SIZE = 65535 - 20 - 8  # the payload of one IPv4 datagram (IP and ICMP headers)

log = logging.getLogger("usernet.cli")


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line on stderr and exit 2, no usage dump, no traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


class _Signals:
    """Signal handlers that only record the signal and write a byte to a pipe; the main loop acts.

    Printing from a handler can re-enter the stdout buffer it interrupted, and threading.Event.set()
    from a handler can deadlock on the lock the interrupted code holds; a pipe is select-able too.
    """

    def __init__(self, *signums: int) -> None:
        self.received: list[int] = []
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._previous = {signum: signal.signal(signum, self._on_signal) for signum in signums}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        try:
            os.write(self._w, b"!")
        except OSError:
            pass  # the pipe is full: a wake-up is pending anyway

    def fileno(self) -> int:
        return self._r

    def take(self) -> list[int]:
        """The signals received since the last call (drains the pipe)."""
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        got, self.received = self.received, []
        return got

    def wait(self, timeout: float) -> list[int]:
        select.select([self._r], [], [], timeout)
        return self.take()

    def __enter__(self) -> _Signals:
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        os.close(self._r)
        os.close(self._w)


# ----------------------------------------------------------------- link options

def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                        help="logging of the usernet modules to stderr (default warning, or as -v/-vv say)")


def _add_link_options(parser: argparse.ArgumentParser, addr_default: str | None = "10.0.0.2/24") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--iface", metavar="IF", help="an existing interface, over AF_PACKET")
    group.add_argument("--tap", metavar="NAME", help="a TAP device (created if missing)")
    group.add_argument("--tun", metavar="NAME", help="a TUN device (layer 3, created if missing)")
    parser.add_argument("--addr", metavar="A/P", default=addr_default,
                        help=f"address/prefix, the prefix is required (default {addr_default})")
    parser.add_argument("--gateway", metavar="G", help="default gateway, inside the subnet of --addr")
    parser.add_argument("--mtu", type=int, metavar="N",
                        help="IP MTU (default: the link's; with --iface at most the interface's)")
    parser.add_argument("--mac", metavar="MAC", help="unicast hardware address (default: the link's or a random one)")
    parser.add_argument("--pcap", metavar="FILE", help="write every frame to a pcap file")
    parser.add_argument("--pcap-fix-checksums", action="store_true",
                        help="write completed checksums into the pcap (offloaded frames carry partial ones)")
    parser.add_argument("--trace", action="store_true",
                        help="print one tcpdump-style line per frame to stderr (-v more, -vv every field)")
    parser.add_argument("-S", dest="absolute_seq", action="store_true",
                        help="absolute TCP sequence numbers in --trace (default relative)")
    parser.add_argument("-x", dest="hexdump", action="store_true", help="hexdump each frame in --trace")
    parser.add_argument("--impair", metavar="SPEC",
                        help="fault injection: loss=P,dup=P,reorder=P,corrupt=P,delay=MS,rate=MBPS")
    parser.add_argument("--seed", type=int, metavar="N", help="seed for every random choice (reproducible runs)")
    parser.add_argument("--dns", action="append", metavar="IP",
                        help="a DNS server for names given to this command (repeatable, asked in order)")
    parser.add_argument("--hosts", metavar="FILE", help="an /etc/hosts-format file of names, read before DNS")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail: logging at info (-vv debug) unless --log-level is given, and in --trace")
    _add_common_options(parser)


def _ipv4_literal(text: str, what: str = "") -> int:
    """A dotted quad, or localhost (the loopback)."""
    from usernet.wire import ipv4

    label = f"{what} {text}" if what else text
    if text == "localhost":
        return 0x7F000001
    try:
        return ipv4.addr(text)
    except ValueError:
        raise UsageError(f"{label}: not an IPv4 address") from None


def _destination(text: str, args: argparse.Namespace | None = None) -> str:
    """A destination address; a host name is kept as it is (resolved by _resolve_destination once the
    host runs) when there is a resolver to ask: --dns, --hosts (or, with --dhcp, the servers DHCP gives)."""
    from usernet.wire import ipv4

    if args is not None and not _is_literal(text):
        if _names_resolvable(args):
            try:
                from usernet.wire import dns

                dns.encode_name(text)
            except ValueError as err:
                raise UsageError(f"{text}: not a host name ({err})") from None
            return text
        raise UsageError(f"{text}: a host name needs a resolver: give --dns IP (or --hosts FILE)")
    value = _ipv4_literal(text)
    if value >> 24 == 0 or ipv4.is_multicast(value) or value >> 28 == 0xF:
        raise UsageError(f"{text}: not a unicast address usernet can reach")
    return ipv4.ntoa(value)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"port {text!r}: not a number")
    if not 0 < int(text) < 65536:
        raise UsageError(f"port {text}: out of range 1..65535")
    return int(text)


def _mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def _check_addr(text: str) -> tuple[int, int]:
    from usernet.wire import ipv4

    addr_text, slash, prefix_text = text.partition("/")
    address = _ipv4_literal(addr_text, "--addr")
    if not slash:
        raise UsageError(f"--addr {text}: give a prefix, e.g. {text}/24")
    if not (prefix_text.isascii() and prefix_text.isdigit() and int(prefix_text) <= 32):
        raise UsageError(f"--addr {text}: the prefix must be a number 0..32")
    prefix = int(prefix_text)
    if address == 0 or ipv4.is_martian_source(address):
        raise UsageError(f"--addr {text}: not a usable host address")
    host_bits = address & ~_mask(prefix) & 0xFFFFFFFF
    if prefix < 31 and host_bits in (0, ~_mask(prefix) & 0xFFFFFFFF):
        which = "network" if host_bits == 0 else "broadcast"
        raise UsageError(f"--addr {text}: that is the {which} address of {ipv4.ntoa(address & _mask(prefix))}/{prefix}")
    return address, prefix


def _check_link_args(args: argparse.Namespace) -> None:
    """Everything about the link flags that can be judged without touching the system."""
    from usernet.links.impair import parse_impair_spec
    from usernet.wire import ethernet, ipv4

    _check_name_args(args)
    if args.impair:
        try:
            parse_impair_spec(args.impair)
        except ValueError as err:
            raise UsageError(f"--impair: {err}") from None
    if args.mtu is not None and not 68 <= args.mtu <= 65535:
        raise UsageError(f"--mtu {args.mtu}: out of range 68..65535")
    if getattr(args, "dhcp", False):
        _check_dhcp_args(args)  # the address and the router come from DHCP
    elif args.addr is None:
        raise UsageError("give --addr A/P")
    address, prefix = (0, 0) if getattr(args, "dhcp", False) else _check_addr(args.addr)
    if args.gateway is not None:
        gateway = _ipv4_literal(args.gateway, "--gateway")
        if args.tun:
            raise UsageError(f"--gateway {args.gateway}: a TUN device is layer 3, every destination is on the link")
        if gateway == address:
            raise UsageError(f"--gateway {args.gateway}: that is --addr itself")
        if gateway & _mask(prefix) != address & _mask(prefix):
            raise UsageError(f"--gateway {args.gateway}: not in {ipv4.ntoa(address & _mask(prefix))}/{prefix}, "
                             f"the subnet of --addr {args.addr}")
    if args.mac is not None:
        if args.tun:
            raise UsageError(f"--mac {args.mac}: a TUN device carries no Ethernet frames")
        try:
            mac = ethernet.parse_mac(args.mac)
        except ValueError:
            raise UsageError(f"--mac {args.mac}: not a MAC address (e.g. 02:00:00:00:00:01)") from None
        if mac[0] & 1:
            what = "the broadcast" if mac == b"\xff" * 6 else "a multicast"
            raise UsageError(f"--mac {args.mac}: {what} address (group bit set); a host needs a unicast one")
        if mac == bytes(6):
            raise UsageError(f"--mac {args.mac}: the all-zero address is not a host's")
    if args.pcap is not None:
        directory = os.path.dirname(os.path.abspath(args.pcap))
        if not os.path.isdir(directory):
            raise UsageError(f"--pcap {args.pcap}: no such directory {directory}")
        if os.path.isdir(args.pcap):
            raise UsageError(f"--pcap {args.pcap}: is a directory")
    elif args.pcap_fix_checksums:
        raise UsageError("--pcap-fix-checksums: only with --pcap FILE")
    if not args.trace and (args.absolute_seq or args.hexdump):
        raise UsageError(f"{'-S' if args.absolute_seq else '-x'}: only with --trace")
    if args.tap or args.tun:
        from usernet.links.tuntap import device_kind

        name = args.tap or args.tun
        want = "tap" if args.tap else "tun"
        kind = device_kind(name)
        if kind not in (None, want):
            if kind in ("tap", "tun"):
                raise UsageError(f"--{want} {name}: {name} is a {kind.upper()} device; use --{kind} {name}")
            raise UsageError(f"--{want} {name}: {name} exists and is not a {want.upper()} device "
                             f"(use --iface {name} for an existing interface)")


def _open_link(args: argparse.Namespace) -> Any:
    from usernet import links

    try:
        if args.iface:
            return links.Packet(args.iface)
        if args.tap:
            return links.Tap(args.tap, mtu=args.mtu)  # we bring it up: its MTU is ours to set
        if args.tun:
            return links.Tun(args.tun, mtu=args.mtu)
    except OSError as err:
        name = args.iface or args.tap or args.tun
        raise UsageError(f"cannot open {name}: {err.strerror or err}") from None
    raise UsageError("choose a link: --iface IF, --tap NAME or --tun NAME")


def _kernel_addresses(ifname: str) -> list[str]:
    """The IPv4 addresses ("A/P") the kernel holds on *ifname*, best effort."""
    try:
        result = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", ifname], capture_output=True,
                                text=True, timeout=5, check=False)
        return re.findall(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", result.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    try:  # no iproute2: the primary address by SIOCGIFADDR
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", ifname.encode()[:15]))
        return [socket.inet_ntoa(reply[20:24]) + "/32"]
    except OSError:
        return []


def _check_link(args: argparse.Namespace, link: Any) -> None:
    """What depends on the device itself, once it is open."""
    if args.mtu is not None:
        limit = int(getattr(link, "device_mtu", link.mtu))
        if args.mtu > limit:
            hint = f"raise it first: ip link set {link.name} mtu {args.mtu}" if args.iface else "the kernel refused it"
            raise UsageError(f"--mtu {args.mtu}: larger than {link.name}'s MTU {limit} ({hint})")
    ours = "" if getattr(args, "dhcp", False) else args.addr.partition("/")[0]
    for held in _kernel_addresses(link.name) if ours else []:
        if held.partition("/")[0] == ours:
            print(f"usernet: warning: the kernel also holds {ours} on {link.name} and will answer for it too "
                  f"(ip addr del {held} dev {link.name})", file=sys.stderr, flush=True)


def _host_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Host keyword arguments for the link flags (the middleware's options as dicts)."""
    trace: Any = False
    if args.trace:
        trace = {"out": sys.stderr, "verbose": args.verbose, "absolute": args.absolute_seq,
                 "hexdump": args.hexdump}
    pcap: Any = args.pcap
    if args.pcap and args.pcap_fix_checksums:
        pcap = {"path": args.pcap, "fix_checksums": True}
    return {"addr": args.addr, "gateway": args.gateway, "mtu": args.mtu, "mac": args.mac, "pcap": pcap,
            "trace": trace, "impair": args.impair, "seed": args.seed, "forward": getattr(args, "forward", False),
            **_name_options(args)}


_LINK_KINDS = ("iface", "tap", "tun")


def _parse_link_spec(spec: str) -> dict[str, Any]:
    """``KIND=NAME,addr=A/P[,addr=A/P][,mtu=N][,mac=M]`` (KIND: iface, tap or tun)."""
    parts = [part.strip() for part in spec.split(",")]
    kind, _, name = parts[0].partition("=")
    if kind not in _LINK_KINDS or not name:
        raise UsageError(f"--link {spec}: begin with iface=NAME, tap=NAME or tun=NAME")
    link: dict[str, Any] = {"kind": kind, "name": name, "addr": [], "mtu": None, "mac": None}
    for part in parts[1:]:
        key, _, value = part.partition("=")
        if key == "addr":
            _check_addr(value)
            link["addr"].append(value)
        elif key == "mtu":
            if not (value.isdigit() and 68 <= int(value) <= 65535):
                raise UsageError(f"--link {spec}: mtu={value}: out of range 68..65535")
            link["mtu"] = int(value)
        elif key == "mac":
            from usernet.wire import ethernet

            try:
                mac = ethernet.parse_mac(value)
            except ValueError:
                raise UsageError(f"--link {spec}: mac={value}: not a MAC address") from None
            if mac[0] & 1 or mac == bytes(6):
                raise UsageError(f"--link {spec}: mac={value}: not a unicast address")
            link["mac"] = value
        else:
            raise UsageError(f"--link {spec}: unknown key {key!r} (addr, mtu, mac)")
    if not link["addr"]:
        raise UsageError(f"--link {spec}: give addr=A/P")
    return link


def _parse_route_spec(spec: str) -> tuple[str, str]:
    """``CIDR,via=IP``."""
    cidr, _, rest = spec.partition(",")
    key, _, via = rest.partition("=")
    if key != "via" or not via:
        raise UsageError(f"--route {spec}: expected CIDR,via=IP")
    _check_addr(cidr)
    _ipv4_literal(via, "--route via")
    return cidr, via


def _add_links_and_routes(args: argparse.Namespace, host: Any) -> None:
    """``up --link ... --route ...``: the interfaces beyond the first, then the static routes."""
    from usernet import links

    for spec in args.link or []:
        link_spec = _parse_link_spec(spec)
        kind, name = link_spec["kind"], link_spec["name"]
        try:
            link: Any
            if kind == "iface":
                link = links.Packet(name)
            elif kind == "tap":
                link = links.Tap(name, mtu=link_spec["mtu"])
            else:
                link = links.Tun(name, mtu=link_spec["mtu"])
        except OSError as err:
            raise UsageError(f"--link {spec}: cannot open {name}: {err.strerror or err}") from None
        try:
            host.add_interface(link, addr=link_spec["addr"], name=name, mtu=link_spec["mtu"], mac=link_spec["mac"])
        except (OSError, ValueError) as err:
            link.close()
            raise UsageError(f"--link {spec}: {getattr(err, 'strerror', None) or err}") from None
    for spec in args.route or []:
        cidr, via = _parse_route_spec(spec)
        try:
            host.add_route(cidr, via=via)
        except (OSError, ValueError) as err:
            raise UsageError(f"--route {spec}: {getattr(err, 'strerror', None) or err}") from None


def _make_host(args: argparse.Namespace) -> Any:
    from usernet.api.host import Host

    _check_link_args(args)
    link = _open_link(args)
    try:
        _check_link(args, link)
        return Host(link, **_host_options(args), **_dhcp_host_options(args))
    except ValueError as err:
        link.close()
        raise UsageError(str(err)) from None
    except OSError as err:
        link.close()
        if args.pcap and err.filename == args.pcap:
            raise UsageError(f"--pcap {args.pcap}: {err.strerror}") from None
        raise
    except BaseException:
        link.close()
        raise


# ----------------------------------------------------------------- up

def _parse_services(specs: Sequence[str]) -> list[tuple[str, str, int]]:
    """--serve specs to (spec, kind, port), refusing unknown kinds, bad ports and one port twice."""
    from usernet.apps.services import SIMPLE_SERVICES

    parsed: list[tuple[str, str, int]] = []
    by_port: dict[int, str] = {}
    for spec in specs:
        kind, _, rest = spec.partition(":")
        if kind not in SIMPLE_SERVICES:
            raise UsageError(f"--serve {spec}: unknown service {kind!r} (available: {', '.join(SIMPLE_SERVICES)})")
        if not (rest.isascii() and rest.isdigit() and 0 < int(rest) < 65536):
            raise UsageError(f"--serve {spec}: expected {kind}:PORT with PORT 1..65535")
        port = int(rest)
        if port in by_port:
            other = by_port[port]
            if other == spec:
                raise UsageError(f"--serve {spec}: given twice")
            raise UsageError(f"--serve {spec}: port {port} is already taken by --serve {other}")
        by_port[port] = spec
        parsed.append((spec, kind, port))
    return parsed


def _parse_http_services(specs: Sequence[str]) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """--serve http:/https:PORT:DIR[,cert=,key=] and wsgi:PORT:MODULE:CALLABLE[,cert=,key=] to (spec,
    kind, port, rest)."""
    if not specs:
        return []  # and the HTTP server (asyncio, ssl: ~8 MB) is never imported
    from usernet.apps.http import parse_spec

    parsed: list[tuple[str, str, int, tuple[str, ...]]] = []
    for spec in specs:
        try:
            kind, port, rest = parse_spec(spec)
        except ValueError as err:
            raise UsageError(f"--serve {spec}: {err}") from None
        for other, _, other_port, _ in parsed:
            if other_port == port:
                raise UsageError(f"--serve {spec}: port {port} is already taken by --serve {other}")
        parsed.append((spec, kind, port, rest))
    return parsed


def _start_http_services(host: Any, services: list[tuple[str, str, int, tuple[str, ...]]]) -> None:
    if not services:
        return
    from usernet.apps.http import start_spec

    for spec, kind, port, rest in services:
        try:
            start_spec(host, kind, port, rest)
        except (OSError, ValueError, ImportError, AttributeError) as err:
            raise UsageError(f"--serve {spec}: {getattr(err, 'strerror', None) or err}") from None


def _print_counters(host: Any) -> None:
    print("counters:")
    print(host.format_counters(), flush=True)


def _print_host_state(host: Any) -> None:
    """Interfaces, routes and neighbours, in the shape of ``ip addr``, ``ip route``, ``ip neigh``."""
    print("interfaces:")
    for iface in host.interfaces():
        stats = iface["stats"]
        print(f"    {iface['index']}: {iface['name']} {iface['kind']} mtu {iface['mtu']}"
              + (f" link {iface['mac']}" if iface["mac"] else "")
              + f" rx {stats.get('rx_packets', 0)} tx {stats.get('tx_packets', 0)}")
        for address in iface["addresses"]:
            print(f"        inet {address}")
    print("routes:")
    for route in host.routes():
        print(f"    {route['destination']}" + (f" via {route['via']}" if route["via"] else "")
              + f" dev {route['dev']} {route['kind']} metric {route['metric']}"
              + (f" src {route['src']}" if route["src"] else ""))
    print("neighbours:")
    for row in host.neighbours():
        print(f"    {row['address']} dev {row['dev']} " + (f"lladdr {row['mac']} " if row["mac"] else "")
              + row["state"])
    sys.stdout.flush()


def _add_control_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", metavar="NAME",
                        help="the host's name (default: the link's), for /run/usernet/NAME.sock and usernet ls")
    parser.add_argument("--control", metavar="PATH",
                        help="the control socket for usernet ss/tcpdump/... (default /run/usernet/NAME.sock)")
    parser.add_argument("--no-control", dest="no_control", action="store_true", help="open no control socket")


def _start_control(args: argparse.Namespace, host: Any) -> None:
    """The control socket (usernet.control), once the host runs; host.close() removes it, on errors too."""
    from usernet.control import ControlError, ControlServer, valid_name

    if args.name:
        if not valid_name(args.name):
            raise UsageError(f"--name {args.name}: use letters, digits and ._-@: (not starting with a dot)")
        host.name = args.name
    if args.no_control:
        return
    if args.control is None and not valid_name(host.name):
        raise UsageError(f"host name {host.name!r} cannot name a control socket: give --name NAME or --control PATH")
    server = ControlServer(host, args.control)
    try:
        server.start()
    except ControlError as err:
        option = f"--control {args.control}" if args.control else "control socket"
        raise UsageError(f"{option}: {err.strerror}") from None
    host.add_service(server.stop)


def cmd_up(args: argparse.Namespace) -> int:
    from usernet.apps.services import serve_simple

    dhcp_servers = _parse_dhcp_server_specs([s for s in args.serve or [] if s.startswith("dhcp-server:")])
    name_services = _parse_name_services([s for s in args.serve or [] if s.startswith(("dns:", "ntp:"))])
    http_services = _parse_http_services([s for s in args.serve or [] if s.startswith(("http:", "https:", "wsgi:"))])
    services = _parse_services([s for s in args.serve or []
                                if not s.startswith(("dhcp-server:", "dns:", "ntp:", "http:", "https:", "wsgi:"))])
    host = _make_host(args)
    try:
        _add_links_and_routes(args, host)
    except BaseException:
        host.close()
        raise
    dhcp_lines = _start_dhcp_client(host)  # --dhcp: blocks until a lease; one line and exit 1 without
    if dhcp_lines is None:
        return 1
    with host:
        _start_control(args, host)
        _start_dhcp_servers(host, dhcp_servers)
        _start_name_services(host, name_services)
        _start_http_services(host, http_services)
        for spec, kind, port in services:
            try:
                serve_simple(host, kind, port)
            except (OSError, ValueError) as err:
                raise UsageError(f"--serve {spec}: {getattr(err, 'strerror', None) or err}") from None
        # Handlers only now: a Ctrl-C during start-up is a KeyboardInterrupt (exit 130, one line).
        with _Signals(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1) as signals:
            print(f"ready {host.address} mac {host.mac or '-'} mtu {host.stack.mtu} link {host.raw_link.name}"
                  + (f" serving {' '.join([*(spec for spec, _, _ in services), *(spec for spec, *_ in http_services)])}"
                     if services or http_services else ""), flush=True)
            while True:
                got = signals.wait(0.5)
                while dhcp_lines:  # one line per lease change (up --dhcp)
                    print(dhcp_lines.pop(0), flush=True)
                if signal.SIGUSR1 in got:
                    _print_host_state(host)
                    _print_counters(host)
                if any(signum != signal.SIGUSR1 for signum in got):
                    break
                if not host.running:
                    print("usernet: runtime stopped unexpectedly", file=sys.stderr)
                    return 1
    _print_counters(host)
    return 0


# ----------------------------------------------------------------- ping

_ICMP_ERRORS = {(3, 0): "Destination Net Unreachable", (3, 1): "Destination Host Unreachable",
                (3, 2): "Destination Protocol Unreachable", (3, 3): "Destination Port Unreachable",
                (3, 4): "Frag needed and DF set", (11, 0): "Time to live exceeded",
                (11, 1): "Frag reassembly time exceeded"}


def cmd_ping(args: argparse.Namespace) -> int:
    from usernet.api.ping import ping
    from usernet.wire import ipv4

    destination = name = _destination(args.destination, args)
    if args.count is not None and args.count < 1:
        raise UsageError("-c: must be at least 1")
    if args.interval <= 0:
        raise UsageError("-i: must be positive")
    if not 0 <= args.size <= MAX_PING_SIZE:
        raise UsageError(f"-s {args.size}: out of range 0..{MAX_PING_SIZE}")
    if args.wait < 0:
        raise UsageError("-W: must not be negative")
    count = args.count if args.count is not None else 2**31
    host = _make_host(args)
    size = args.size
    tally = {"dup": 0, "corrupt": 0, "errors": 0}

    def on_reply(info: dict[str, Any]) -> None:
        if "rtt" in info:
            dup = " (DUP!)" if info.get("duplicate") else ""
            bad = "" if info["ok"] else " (BAD CHECKSUM/DATA)"
            tally["dup"] += bool(dup)
            tally["corrupt"] += bool(bad)
            print(f"{info['size'] + 8} bytes from {info['src']}: icmp_seq={info['icmp_seq']} ttl={info['ttl']} "
                  f"time={info['rtt'] * 1000:.3f} ms{dup}{bad}", flush=True)
        elif "error_type" in info:
            tally["errors"] += 1
            what = _ICMP_ERRORS.get((info["error_type"], info["code"]),
                                    f"icmp_type={info['error_type']} code={info['code']}")
            print(f"From {info['src']} {what}", flush=True)
        elif "error" in info:
            tally["errors"] += 1
            print(f"ping: sendmsg: {info['error']}", flush=True)

    with host:
        destination = _resolve_destination(host, destination, "ping")
        try:
            with host.lock:
                host.stack.next_hop(ipv4.addr(destination))
        except OSError as err:
            subnet = f"{ipv4.ntoa(host.stack.network)}/{host.stack.prefix}"
            print(f"usernet ping: {destination}: {err.strerror} (not in {subnet} and no --gateway)",
                  file=sys.stderr)
            return 1
        with _Signals(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            print(f"PING {name} ({destination}) {size}({size + 28}) bytes of data.", flush=True)
            started = time.monotonic()
            rtts = ping(host, destination, count=count, interval=args.interval, size=size, timeout=args.wait,
                        on_reply=on_reply, should_stop=lambda: bool(signals.received))
            elapsed = (time.monotonic() - started) * 1000
    sent = len(rtts)
    got = [r for r in rtts if r is not None]
    # iputils' summary: duplicates, corrupted replies and errors only when there are some.
    extra = "".join(f", +{n} {label}" for n, label in ((tally["dup"], "duplicates"), (tally["corrupt"], "corrupted"),
                                                        (tally["errors"], "errors")) if n)
    loss = 100.0 * (sent - len(got)) / sent if sent else 100.0
    print(f"\n--- {destination} ping statistics ---")
    print(f"{sent} packets transmitted, {len(got)} received{extra}, {loss:g}% packet loss, time {elapsed:.0f}ms")
    if got:
        ms = [r * 1000 for r in got]
        import statistics  # here: it pulls in decimal and fractions, which nothing else needs

        mdev = math.sqrt(statistics.pvariance(ms)) if len(ms) > 1 else 0.0
        print(f"rtt min/avg/max/mdev = {min(ms):.3f}/{statistics.fmean(ms):.3f}/{max(ms):.3f}/{mdev:.3f} ms")
    sys.stdout.flush()
    return 0 if got else 1


# ----------------------------------------------------------------- nc

class _StdinPump(threading.Thread):
    """stdin -> peer; on EOF half-close (TCP) so the peer sees the end of our stream.

    It reads fd 0 with os.read behind select, never sys.stdin.buffer: a thread still blocked inside
    the BufferedReader at interpreter exit makes Python abort (``_enter_buffered_busy``). select also
    watches a stop pipe, so the thread ends when the session does.
    """

    def __init__(self, sock: Any, udp: bool, target: list[tuple[str, int] | None], active: list[float]) -> None:
        super().__init__(name="usernet-nc-stdin", daemon=True)
        self.sock, self.udp, self.target, self.active = sock, udp, target, active
        self.eof = False
        self._stop_r, self._stop_w = os.pipe()

    def run(self) -> None:
        try:
            while True:
                try:
                    ready, _, _ = select.select([0, self._stop_r], [], [])
                except (OSError, ValueError):
                    break  # fd 0 went away: end of input
                if self._stop_r in ready:
                    return
                try:
                    chunk = os.read(0, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                self.active[0] = time.monotonic()
                if self.udp:
                    if self.target[0] is not None:  # listening UDP: nobody to send to before a datagram came
                        self.sock.sendto(chunk, self.target[0])
                else:
                    self.sock.sendall(chunk)
            self.eof = True
            if not self.udp:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the socket closed under us: the session is over

    def stop(self) -> None:
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        self.join(timeout=2)
        if not self.is_alive():
            os.close(self._stop_r)
            os.close(self._stop_w)


def _nc_signal(got: list[int]) -> int:
    interrupted = signal.SIGINT in got
    print(f"usernet nc: {'interrupted' if interrupted else 'terminated'}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED if interrupted else 0


def _select(fds: list[int], signals: _Signals, deadline: float | None, write: Sequence[int] = ()) -> \
        tuple[list[int], list[int], bool]:
    """select() bounded by *deadline* and by a second (a lost readiness update costs at most that)."""
    timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
    readable, writable, _ = select.select([*fds, signals.fileno()], list(write), [], timeout)
    return readable, writable, deadline is not None and time.monotonic() >= deadline


def _nc_connect(sock: Any, peer: tuple[str, int], timeout: float, signals: _Signals) -> list[int] | None:
    """Connect without blocking signals out; returns the signals that interrupted it, or None."""
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    try:
        sock.connect(peer)
    except BlockingIOError:
        while True:
            _, _, late = _select([sock.fileno()], signals, deadline, write=[sock.fileno()])
            got = signals.take()
            if got:
                sock.close()
                return got
            try:
                sock.connect(peer)
                break
            except BlockingIOError:
                if late:
                    sock.close()
                    raise TimeoutError("timed out") from None
            except OSError as err:
                if err.errno != errno.EISCONN:
                    raise
                break
    sock.setblocking(True)
    return None


def cmd_nc(args: argparse.Namespace) -> int:
    if args.listen:
        if args.port is not None:
            raise UsageError("nc -l PORT: give only the port to listen on")
        port = _port(args.port_or_host)
        peer: tuple[str, int] | None = None
    else:
        if args.port is None:
            raise UsageError("nc HOST PORT (or nc -l PORT)")
        peer = (_destination(args.port_or_host, args), _port(args.port))
        port = 0
    if args.timeout <= 0:
        raise UsageError("-w: must be positive")
    if args.idle is not None and args.idle <= 0:
        raise UsageError("-i: must be positive")
    host = _make_host(args)
    with host, _Signals(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        if peer is not None:
            peer = (_resolve_destination(host, peer[0], "nc"), peer[1])
        return _nc_session(host, args, peer, port, signals)


def _nc_session(host: Any, args: argparse.Namespace, peer: tuple[str, int] | None, port: int,
                signals: _Signals) -> int:
    udp = args.udp
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    active = [time.monotonic()]  # the last time data moved either way (the pump updates it too)

    def idle_deadline() -> float | None:
        return None if args.idle is None else active[0] + args.idle

    if args.listen:
        server = host.socket(type=kind)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("", port))
        if udp:
            sock = server
        else:
            server.listen(1)
            server.setblocking(False)
        log.info("listening on %s:%d/%s", host.address, port, "udp" if udp else "tcp")
        while not udp:
            _, _, late = _select([server.fileno()], signals, idle_deadline())
            got = signals.take()
            if got:
                return _nc_signal(got)
            if late:
                return 0
            try:
                sock, peer = server.accept()
            except BlockingIOError:
                continue
            server.close()
            sock.setblocking(True)
            break
    else:
        assert peer is not None
        sock = host.socket(type=kind)
        try:
            interrupted = _nc_connect(sock, peer, args.timeout, signals)
        except ConnectionRefusedError:
            print(f"usernet nc: connect to {peer[0]}:{peer[1]}: Connection refused", file=sys.stderr)
            return 1
        except TimeoutError:
            print(f"usernet nc: connect to {peer[0]}:{peer[1]}: timed out", file=sys.stderr)
            return 1
        except OSError as err:
            print(f"usernet nc: connect to {peer[0]}:{peer[1]}: {err.strerror or err}", file=sys.stderr)
            return 1
        if interrupted:
            return _nc_signal(interrupted)
        log.info("connected to %s:%d", *peer)
    target: list[tuple[str, int] | None] = [peer]
    pump = _StdinPump(sock, udp, target, active) if sys.stdin is not None else None
    if pump is not None:
        pump.start()
    elif not udp:
        sock.shutdown(socket.SHUT_WR)  # no stdin at all: nothing to send
    out = sys.stdout.buffer
    status = 0
    finished = False  # the session ended by itself (not by a signal): let our FIN be acknowledged
    try:
        while True:
            _, _, late = _select([sock.fileno()], signals, idle_deadline())
            got = signals.take()
            if got:
                status = _nc_signal(got)
                break
            if late:
                log.info("idle for %g s: closing", args.idle)
                finished = True
                break
            if not host.running:  # non-blocking reads would never notice on their own
                print("usernet nc: runtime stopped unexpectedly", file=sys.stderr)
                status = 1
                break
            try:
                data, source = sock.recvfrom(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            if udp and target[0] is None:
                sock.connect(source)  # the first datagram's sender is our peer from now on
                target[0] = source
            if not data:
                if udp:
                    continue  # an empty datagram, not the end
                finished = True
                break
            active[0] = time.monotonic()
            out.write(data)
            out.flush()
    except BrokenPipeError:
        raise  # our stdout, not the connection: main() exits quietly
    except OSError as err:
        if err.errno not in (errno.ECONNRESET, errno.EBADF):
            print(f"usernet nc: {err.strerror or err}", file=sys.stderr)
            status = 1
    finally:
        conn = getattr(sock, "_conn", None)
        if finished and conn is not None and pump is not None and pump.eof:
            # Give our FIN time to be acknowledged before the host stops.
            deadline = time.monotonic() + 2
            while conn.state not in ("CLOSED", "TIME-WAIT", "FIN-WAIT-2") and conn.fin_queued \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
        sock.close()  # also ends a pump blocked in sendall
        if pump is not None:
            pump.stop()
    return status


# ----------------------------------------------------------------- drill

def cmd_drill(args: argparse.Namespace) -> int:
    from usernet.drill import ScriptError, parse_script, run_script

    passed = failed = 0
    if args.tolerance_usecs is not None and args.tolerance_usecs < 0:
        raise UsageError("--tolerance-usecs: must not be negative")
    tolerance = args.tolerance_usecs / 1e6 if args.tolerance_usecs is not None else None
    for path in args.scripts:
        try:
            with open(path, encoding="utf-8") as f:
                script = parse_script(f.read(), path)
        except OSError as err:
            raise UsageError(f"{path}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not a text file") from None
        except ScriptError as err:
            print(f"FAIL {path}:{err.line}: {err}", flush=True)
            failed += 1
            continue
        result = run_script(script, tolerance=tolerance, relaxed=args.relaxed, strict_asserts=args.strict_asserts)
        if result.passed:
            passed += 1
            print(f"PASS {path}", flush=True)
        else:
            failed += 1
            print(f"FAIL {path}:{result.line}: {result.message}", flush=True)
        for note in result.unevaluated:  # always shown: nothing is skipped silently
            print(f"     note: {note}")
        if args.verbose:
            for note in result.notes:
                if note not in result.unevaluated:
                    print(f"     note: {note}")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


# ----------------------------------------------------------------- dhcp (client: up --dhcp, usernet dhcp; server)

def _check_dhcp_args(args: argparse.Namespace) -> None:
    if args.tun:
        raise UsageError(f"--tun {args.tun}: DHCP needs Ethernet (--iface or --tap)")
    if args.gateway is not None:
        raise UsageError(f"--gateway {args.gateway}: DHCP gives the router; not with --dhcp")
    timeout = getattr(args, "dhcp_timeout", None)
    if timeout is not None and timeout < 0:
        raise UsageError(f"--timeout {timeout:g}: must not be negative")


def _dhcp_host_options(args: argparse.Namespace) -> dict[str, Any]:
    """Host(dhcp=...) for --dhcp and `usernet dhcp`."""
    if not getattr(args, "dhcp", False):
        return {}
    timeout = getattr(args, "dhcp_timeout", None)
    options: dict[str, Any] = {"timeout": None if not timeout else timeout,
                               "release": not getattr(args, "keep", False)}
    if getattr(args, "hostname", None):
        options["hostname"] = args.hostname
    return {"dhcp": options}


def _start_dhcp_client(host: Any) -> list[str] | None:
    """Start *host*; with --dhcp that blocks until a lease. Returns the list that collects one line
    per later lease change, or None (one line said) when no lease came."""
    from usernet.api.dhcp import summary

    try:
        host.start()
    except TimeoutError as err:
        print(f"usernet: {err.strerror or err}", file=sys.stderr, flush=True)
        return None
    lines: list[str] = []
    if host.dhcp_client is not None:
        with host.lock:
            host.dhcp_client.on_change.append(lambda lease, what: lines.append(summary(lease, what)))
    return lines


def _parse_dhcp_server_specs(specs: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    from usernet.apps.dhcp import parse_server_spec

    if len(specs) > 1:
        raise UsageError(f"--serve {specs[1]}: one DHCP server a host")
    parsed = []
    for spec in specs:
        try:
            parsed.append((spec, parse_server_spec(spec)))
        except ValueError as err:
            raise UsageError(f"--serve {spec}: {err}") from None
    return parsed


def _start_dhcp_servers(host: Any, specs: list[tuple[str, dict[str, Any]]]) -> None:
    from usernet.apps.dhcp import serve_dhcp

    for spec, options in specs:
        try:
            serve_dhcp(host, options)
        except (OSError, ValueError) as err:
            raise UsageError(f"--serve {spec}: {getattr(err, 'strerror', None) or err}") from None


def cmd_dhcp(args: argparse.Namespace) -> int:
    """Acquire a lease, print it, release it (unless --keep) and exit."""
    from usernet.api.dhcp import describe

    host = _make_host(args)
    try:
        if _start_dhcp_client(host) is None:
            return 1
        for line in describe(host.dhcp_lease):
            print(line)
        sys.stdout.flush()
    finally:
        host.close()
    return 0


# ----------------------------------------------------------------- names and time (DNS, NTP)

def _is_literal(text: str) -> bool:
    from usernet.wire import ipv4

    if text == "localhost":
        return True
    try:
        ipv4.addr(text)
        return True
    except ValueError:
        # Something that looks like an address but is not one (999.1.1.1) is refused as one.
        return text.replace(".", "").isdigit()


def _names_resolvable(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "dns", None) or getattr(args, "hosts", None) or getattr(args, "dhcp", False)
                or getattr(args, "server", None))


def _check_name_args(args: argparse.Namespace) -> None:
    """--dns and --hosts, judged before anything is opened."""
    from usernet.proto.dns_client import parse_hosts

    for server in getattr(args, "dns", None) or []:
        _ipv4_literal(server, "--dns")
    path = getattr(args, "hosts", None)
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                args.hosts_table = parse_hosts(f.read())
        except OSError as err:
            raise UsageError(f"--hosts {path}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--hosts {path}: not a text file") from None


def _name_options(args: argparse.Namespace) -> dict[str, Any]:
    """Host(dns=..., hosts=...) for --dns and --hosts."""
    options: dict[str, Any] = {}
    if getattr(args, "dns", None):
        options["dns"] = list(args.dns)
    if getattr(args, "hosts_table", None):
        options["hosts"] = args.hosts_table
    return options


def _resolve_destination(host: Any, text: str, command: str) -> str:
    """A name kept by _destination, resolved through the running host's resolver (the first
    address); a failure is one line and exit 2, as iputils' ping does for an unknown host."""
    import socket as _socket

    from usernet.wire import ipv4

    if _is_literal(text):
        return _destination(text)
    try:
        address = host.resolve_all(text)[0]
    except _socket.gaierror as err:
        raise UsageError(f"{text}: {err.strerror}") from None
    value = ipv4.addr(address)
    if value >> 24 == 0 or ipv4.is_multicast(value) or value >> 28 == 0xF:
        raise UsageError(f"{text} ({address}): not a unicast address usernet can reach")
    log.info("%s: %s is %s", command, text, address)
    return address


def _parse_name_services(specs: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """--serve dns:PORT[,...] and ntp:PORT[,stratum=N] to (spec, kind, options)."""
    from usernet.apps import dns as dns_app
    from usernet.apps import ntp as ntp_app

    parsed: list[tuple[str, str, dict[str, Any]]] = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        try:
            options = dns_app.parse_spec(rest) if kind == "dns" else ntp_app.parse_spec(rest)
        except ValueError as err:
            raise UsageError(f"--serve {spec}: {err}") from None
        for other, other_kind, other_options in parsed:
            if other_kind == kind and other_options["port"] == options["port"]:
                raise UsageError(f"--serve {spec}: port {options['port']} is already taken by --serve {other}")
        parsed.append((spec, kind, options))
    return parsed


def _start_name_services(host: Any, services: list[tuple[str, str, dict[str, Any]]]) -> None:
    from usernet.apps.dns import serve_dns
    from usernet.apps.ntp import serve_ntp

    for spec, kind, options in services:
        try:
            if kind == "dns":
                dynamic = None
                dhcp_server = getattr(host, "dhcp_server", None)  # names the DHCP server leased
                if dhcp_server is not None and hasattr(dhcp_server, "hostnames"):
                    dynamic = dhcp_server.hostnames
                serve_dns(host, dynamic=dynamic, **options)
            else:
                serve_ntp(host, **options)
        except (OSError, ValueError) as err:
            raise UsageError(f"--serve {spec}: {getattr(err, 'strerror', None) or err}") from None


_RESOLVE_TYPES = ("A", "AAAA", "ANY")


def cmd_resolve(args: argparse.Namespace) -> int:
    """Every address of NAME, one a line; exit 1 (one line) when the name or the type does not exist,
    2 for usage and network errors (no answer, SERVFAIL, refused)."""
    from usernet.proto.dns_client import NODATA, NXDOMAIN, ResolveError
    from usernet.wire import dns

    if args.server is not None:
        _ipv4_literal(args.server, "--server")
    if not (args.server or args.dns or args.hosts or getattr(args, "dhcp", False)):
        raise UsageError("resolve: give --server IP or --dns IP (or --hosts FILE)")
    try:
        dns.encode_name(args.name)
    except ValueError as err:
        raise UsageError(f"{args.name}: not a host name ({err})") from None
    if args.timeout <= 0:
        raise UsageError("--timeout: must be positive")
    qtypes = [dns.A, dns.AAAA] if args.type == "ANY" else [dns.TYPES[args.type]]
    host = _make_host(args)
    addresses: list[str] = []
    negative: list[str] = []
    with host:
        servers = [args.server] if args.server else None
        for qtype in qtypes:
            if _is_literal(args.name) and qtype == dns.A:
                addresses.append(host.resolve_all(args.name)[0])
                continue
            try:
                answer = host.resolver.resolve(args.name, qtype, timeout=args.timeout, servers=servers)
            except ResolveError as err:
                if err.kind in (NXDOMAIN, NODATA):
                    negative.append(err.kind)
                    continue
                print(f"usernet resolve: {args.name}: {err.detail or err.kind}", file=sys.stderr, flush=True)
                return EXIT_USAGE
            addresses.extend(answer.addresses)
            log.info("%s %s: %s via %s over %s (ttl %d)", args.name, dns.type_name(qtype), answer.canonical,
                     answer.server or answer.source, answer.transport, answer.ttl)
    for address in addresses:
        print(address)
    sys.stdout.flush()
    if addresses:
        return 0
    if NXDOMAIN in negative:
        print(f"usernet resolve: {args.name}: no such name (NXDOMAIN)", file=sys.stderr, flush=True)
    else:
        print(f"usernet resolve: {args.name}: no {args.type if args.type != 'ANY' else 'A or AAAA'} record",
              file=sys.stderr, flush=True)
    return 1


def cmd_ntp(args: argparse.Namespace) -> int:
    """SNTP against SERVER: one line per sample, then the minimum-delay one; exit 1 when none answers
    or the server refuses (kiss-o'-death, unsynchronised)."""
    from usernet.api.ntp import query
    from usernet.proto.ntp import NtpError, best

    if args.samples < 1:
        raise UsageError("-n: must be at least 1")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: out of range 1..65535")
    server = _destination(args.server_name, args)
    host = _make_host(args)
    with host:
        address = _resolve_destination(host, server, "ntp")
        try:
            samples = query(host, address, samples=args.samples, timeout=args.timeout, port=args.port)
        except NtpError as err:
            print(f"usernet ntp: {args.server_name}: {err}", file=sys.stderr, flush=True)
            return 1
        except TimeoutError:
            print(f"usernet ntp: {args.server_name}: no answer", file=sys.stderr, flush=True)
            return 1
        except OSError as err:
            print(f"usernet ntp: {args.server_name}: {err.strerror or err}", file=sys.stderr, flush=True)
            return 1
    for sample in samples:
        print(f"sample offset {sample.offset:+.6f} s delay {sample.delay:.6f} s")
    chosen = best(samples)
    print(f"server {address} stratum {chosen.stratum} refid {chosen.ref_id} offset {chosen.offset:+.6f} s "
          f"delay {chosen.delay:.6f} s", flush=True)
    return 0


# ----------------------------------------------------------------- demo

def cmd_demo(args: argparse.Namespace) -> int:
    from usernet.demo import run_demo

    return run_demo(trace=not args.quiet)


# ----------------------------------------------------------------- run

def _run_target(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """("module", NAME, ARGS) for -m, ("path", SCRIPT, ARGS) for a script (after an optional --)."""
    if args.module is not None:
        if not args.module:
            raise UsageError("-m: expected a module name")
        return "module", args.module[0], args.module[1:]
    program = list(args.program or [])
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        raise UsageError("run: expected -- SCRIPT.py [ARGS] or -m MODULE [ARGS]")
    if program[0].startswith("-"):
        raise UsageError(f"run: unknown option {program[0]} (the program comes after --)")
    if not os.path.exists(program[0]):
        raise UsageError(f"run: {program[0]}: no such file")
    return "path", program[0], program[1:]


def _run_program(kind: str, target: str, argv: list[str]) -> int:
    """Run a script or module as ``python SCRIPT`` / ``python -m MODULE`` would, in this process:
    sys.argv and sys.path[0] as python sets them; returns the exit status."""
    import runpy

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [target, *argv]
    sys.path.insert(0, os.path.dirname(os.path.abspath(target)) if kind == "path" else os.getcwd())
    try:
        if kind == "path":
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return EXIT_INTERRUPTED
    except BaseException:
        exc_type, exc, tb = sys.exc_info()
        # as python prints it: from the program's frames on, not usernet's and runpy's
        while tb is not None and (tb.tb_frame.f_code.co_filename == __file__
                                  or tb.tb_frame.f_globals.get("__name__") == "runpy"):
            tb = tb.tb_next
        traceback.print_exception(exc_type, exc, tb)
        return 1
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path


def cmd_run(args: argparse.Namespace) -> int:
    from usernet.api.patch import patched

    kind, target, argv = _run_target(args)
    host = _make_host(args)
    if _start_dhcp_client(host) is None:  # --dhcp: blocks until a lease; one line and exit 1 without
        host.close()
        return 1
    with host:
        _start_control(args, host)
        sys.stdout.flush()
        with patched(host):
            status = _run_program(kind, target, argv)
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
    return status


# ----------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="usernet", description="A userspace TCP/IP stack in pure Python.")
    from usernet import __version__

    parser.add_argument("--version", action="version", version=f"usernet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = sub.add_parser("up", help="run a host until SIGTERM/SIGINT/SIGHUP (SIGUSR1 prints its state and counters)")
    _add_link_options(up)
    up.add_argument("--dhcp", action="store_true",
                    help="get the address, router and DNS servers by DHCP (instead of --addr); `ready` once leased")
    up.add_argument("--dhcp-timeout", dest="dhcp_timeout", type=float, default=60.0, metavar="S",
                    help="with --dhcp: give up (exit 1) without a lease after S seconds (0: wait for ever)")
    up.add_argument("--link", action="append", metavar="KIND=NAME,addr=A/P[,mtu=N][,mac=M]",
                    help="another interface (KIND: iface, tap or tun; repeatable)")
    up.add_argument("--route", action="append", metavar="CIDR,via=IP", help="a static route (repeatable)")
    up.add_argument("--forward", action="store_true", help="route between the interfaces (RFC 1812)")
    up.add_argument("--serve", action="append", metavar="SPEC",
                    help="echo:PORT, discard:PORT, chargen:PORT, dns:PORT[,record=NAME=IP,...,hosts=FILE,"
                         "forward=IP], ntp:PORT[,stratum=N], http:PORT:DIR (static files), "
                         "https:PORT:DIR,cert=PEM,key=PEM, wsgi:PORT:MODULE:CALLABLE[,cert=PEM,key=PEM] "
                         "(a WSGI app found in the current directory or on PYTHONPATH) "
                         "(repeatable, one service a port)")
    _add_control_options(up)
    up.set_defaults(func=cmd_up)

    ping = sub.add_parser("ping", help="send ICMP echo requests")
    _add_link_options(ping)
    ping.add_argument("-c", dest="count", type=int, metavar="N", help="stop after N requests")
    ping.add_argument("-i", dest="interval", type=float, default=1.0, metavar="S", help="seconds between requests")
    ping.add_argument("-s", dest="size", type=int, default=56, metavar="SIZE",
                      help=f"payload bytes, 0..{MAX_PING_SIZE} (default 56)")
    ping.add_argument("-W", dest="wait", type=float, default=1.0, metavar="S",
                      help="seconds to wait for the last reply")
    ping.add_argument("destination", metavar="HOST", help="an IPv4 address, or a name (with --dns or --hosts)")
    ping.set_defaults(func=cmd_ping)

    nc = sub.add_parser("nc", help="stdin to a TCP/UDP peer, the peer to stdout",
                        description="stdin to a TCP/UDP peer, the peer to stdout. Ends (exit 0) when the peer "
                                    "closes, after -i seconds idle, or on SIGTERM/SIGHUP (one line on stderr).")
    _add_link_options(nc)
    nc.add_argument("-l", dest="listen", action="store_true", help="accept one connection on PORT")
    nc.add_argument("-u", dest="udp", action="store_true", help="UDP instead of TCP")
    nc.add_argument("-w", dest="timeout", type=float, default=10.0, metavar="S", help="connect timeout (default 10)")
    nc.add_argument("-i", dest="idle", type=float, metavar="S",
                    help="quit (exit 0) after S seconds without data either way; ends `-l -u`, which has no EOF")
    nc.add_argument("port_or_host", metavar="HOST|PORT",
                    help="an IPv4 address or a name (with --dns or --hosts) to connect to, or -l's PORT")
    nc.add_argument("port", nargs="?", metavar="PORT")
    nc.set_defaults(func=cmd_nc)

    drill = sub.add_parser("drill", help="run packetdrill-dialect scripts against usernet in virtual time")
    drill.add_argument("--tolerance-usecs", type=int, metavar="N", help="timing tolerance (default 4000)")
    drill.add_argument("--strict-asserts", action="store_true",
                       help="fail a script whose %%{ }%% assertions cannot be evaluated (default: a note)")
    drill.add_argument("--relaxed", action="store_true",
                       help="ignore what differs between correct stacks: SYN options, windows, PSH, buffer sizes")
    drill.add_argument("-v", "--verbose", action="count", default=0,
                       help="print notes (skipped lines); logging at info unless --log-level is given")
    _add_common_options(drill)
    drill.add_argument("scripts", nargs="+", metavar="SCRIPT.pkt")
    drill.set_defaults(func=cmd_drill)

    dhcp_cmd = sub.add_parser("dhcp", help="get a DHCP lease, print it (address, router, DNS, domain, lease), exit",
                              description="Acquire a DHCP lease on the link and print it; the lease is released "
                                          "at exit unless --keep. Exit 1 with one line when no server answers.")
    _add_link_options(dhcp_cmd, addr_default=None)
    dhcp_cmd.add_argument("--timeout", dest="dhcp_timeout", type=float, default=30.0, metavar="S",
                          help="give up after S seconds (default 30)")
    dhcp_cmd.add_argument("--hostname", metavar="NAME", help="send this hostname (option 12)")
    dhcp_cmd.add_argument("--keep", action="store_true", help="do not release the lease at exit")
    dhcp_cmd.set_defaults(func=cmd_dhcp, dhcp=True)

    resolve = sub.add_parser("resolve", help="look a name up in DNS: every address, one a line",
                             description="Look NAME up (hosts file, then DNS) and print every address, one a "
                                         "line. Exit 1 for a name or type that does not exist (NXDOMAIN, "
                                         "NODATA), 2 for usage and network errors.")
    _add_link_options(resolve)
    resolve.add_argument("--server", metavar="S", help="the DNS server to ask (default: the --dns ones)")
    resolve.add_argument("--type", choices=_RESOLVE_TYPES, default="A", type=str.upper,
                         help="A (default), AAAA, or ANY (both: A and AAAA queries)")
    resolve.add_argument("--timeout", type=float, default=15.0, metavar="S",
                         help="give up after S seconds (default 15; retries and failover happen within)")
    resolve.add_argument("name", metavar="NAME")
    resolve.set_defaults(func=cmd_resolve)

    ntp_cmd = sub.add_parser("ntp", help="ask an NTP server the time: offset, delay, stratum, reference ID",
                             description="SNTP (RFC 4330) against SERVER; never sets any clock.")
    _add_link_options(ntp_cmd)
    ntp_cmd.add_argument("-n", dest="samples", type=int, default=4, metavar="SAMPLES",
                         help="exchanges (default 4); the minimum-delay one is reported")
    ntp_cmd.add_argument("--port", type=int, default=123, metavar="N", help="server port (default 123)")
    ntp_cmd.add_argument("--timeout", type=float, default=2.0, metavar="S", help="per sample (default 2)")
    ntp_cmd.add_argument("server_name", metavar="SERVER")
    ntp_cmd.set_defaults(func=cmd_ntp)

    demo = sub.add_parser("demo", help="hosts on an in-memory network talk to each other (no root needed)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no per-frame trace")
    _add_common_options(demo)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run a Python program with its networking on a usernet host",
                         description="Run SCRIPT.py (or -m MODULE) in this process with the socket module "
                                     "switched to a usernet host (usernet.patched): IPv4 TCP/UDP sockets, "
                                     "create_connection, getaddrinfo and name lookups; AF_UNIX, IPv6 and raw "
                                     "sockets stay the kernel's. The exit status is the program's.")
    _add_link_options(run)
    run.add_argument("--dhcp", action="store_true", help="get the address, router and DNS servers by DHCP")
    run.add_argument("--dhcp-timeout", dest="dhcp_timeout", type=float, default=60.0, metavar="S",
                     help="with --dhcp: give up (exit 1) without a lease after S seconds (0: wait for ever)")
    run.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE [ARGS]",
                     help="run a library module as a script, as python -m does")
    run.add_argument("program", nargs=argparse.REMAINDER, metavar="-- SCRIPT.py [ARGS]")
    _add_control_options(run)
    run.set_defaults(func=cmd_run)

    from usernet.cli_control import add_parsers as add_control_parsers
    from usernet.cli_get import add_parser as add_get_parser

    add_get_parser(sub)
    add_control_parsers(sub)  # ss, neigh, route, addr, stats, tcpdump, ls
    return parser


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so a second main() in one process replaces it instead of adding another."""


def _configure_logging(args: argparse.Namespace) -> int:
    """The ``usernet`` logger hierarchy to stderr at --log-level (or as -v/-vv say); returns the level."""
    verbose = getattr(args, "verbose", 0) or 0
    level_name = getattr(args, "log_level", None)
    if level_name:
        level = _LEVELS[level_name]
    else:
        level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logger = logging.getLogger("usernet")
    for handler in [h for h in logger.handlers if isinstance(h, _CliHandler)]:
        logger.removeHandler(handler)
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return level


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr is gone too: nothing left to tell


def _stdout_broken() -> bool:
    """Whether stdout is a pipe or socket whose reader went away."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    level = logging.WARNING
    try:
        args = build_parser().parse_args(argv)
        level = _configure_logging(args)
        func: Callable[[argparse.Namespace], int] = args.func
        return int(func(args))
    except UsageError as err:
        _say(f"usernet: error: {err}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("usernet: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError as err:
        if not _stdout_broken():
            return _internal_error(err, err.__traceback__, level)
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_BROKEN_PIPE
    except Exception as err:
        return _internal_error(err, err.__traceback__, level)


def _internal_error(err: BaseException, tb: TracebackType | None, level: int) -> int:
    if level <= logging.DEBUG:
        _say("".join(traceback.format_exception(type(err), err, tb)).rstrip())
        _say(f"usernet: internal error: {type(err).__name__}: {err}")
    else:
        _say(f"usernet: internal error: {type(err).__name__}: {err} (--log-level debug shows where)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
