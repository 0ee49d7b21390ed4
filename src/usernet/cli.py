"""The ``usernet`` command line tool."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line on stderr and exit 2, no usage dump, no traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A problem with what the user asked for: printed as one line, exit code 2."""


def _add_link_options(parser: argparse.ArgumentParser, addr_default: str | None = "10.0.0.2/24") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--iface", metavar="IF", help="an existing interface, over AF_PACKET")
    group.add_argument("--tap", metavar="NAME", help="a TAP device (created if missing)")
    group.add_argument("--tun", metavar="NAME", help="a TUN device (layer 3, created if missing)")
    parser.add_argument("--addr", metavar="A/P", default=addr_default, help=f"address/prefix (default {addr_default})")
    parser.add_argument("--gateway", metavar="G", help="default gateway")
    parser.add_argument("--mtu", type=int, metavar="N", help="IP MTU (default: the link's)")
    parser.add_argument("--mac", metavar="MAC", help="hardware address (default: the link's or a random one)")
    parser.add_argument("--pcap", metavar="FILE", help="write every frame to a pcap file")
    parser.add_argument("--trace", action="store_true", help="print one line per frame")
    parser.add_argument("--impair", metavar="SPEC",
                        help="fault injection: loss=P,dup=P,reorder=P,corrupt=P,delay=MS,rate=MBPS")
    parser.add_argument("--seed", type=int, metavar="N", help="seed for every random choice (reproducible runs)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")


def _open_link(args: argparse.Namespace) -> Any:
    from usernet import links

    try:
        if args.iface:
            return links.Packet(args.iface)
        if args.tap:
            return links.Tap(args.tap)
        if args.tun:
            return links.Tun(args.tun)
    except OSError as err:
        name = args.iface or args.tap or args.tun
        raise UsageError(f"cannot open {name}: {err.strerror or err}") from None
    raise UsageError("choose a link: --iface IF, --tap NAME or --tun NAME")


def _make_host(args: argparse.Namespace, dhcp: bool = False) -> Any:
    from usernet.api.host import Host
    from usernet.links.impair import parse_impair_spec

    if args.impair:
        try:
            parse_impair_spec(args.impair)
        except ValueError as err:
            raise UsageError(f"--impair: {err}") from None
    if args.mtu is not None and not 68 <= args.mtu <= 65535:
        raise UsageError(f"--mtu {args.mtu}: out of range 68..65535")
    link = _open_link(args)
    try:
        return Host(link, addr=args.addr, gateway=args.gateway, mtu=args.mtu, mac=args.mac, dhcp=dhcp,
                    pcap=args.pcap, trace=args.trace, impair=args.impair, seed=args.seed)
    except ValueError as err:
        link.close()
        raise UsageError(str(err)) from None


# ----------------------------------------------------------------- up

def _parse_serve(spec: str) -> tuple[str, list[str]]:
    kind, _, rest = spec.partition(":")
    return kind, rest.split(":") if rest else []


def _start_services(host: Any, specs: Sequence[str]) -> list[str]:
    from usernet.apps.services import SIMPLE_SERVICES, serve_simple

    started = []
    for spec in specs:
        kind, params = _parse_serve(spec)
        if kind in SIMPLE_SERVICES:
            if len(params) != 1 or not params[0].isdigit() or not 0 < int(params[0]) < 65536:
                raise UsageError(f"--serve {spec}: expected {kind}:PORT")
            serve_simple(host, kind, int(params[0]))
            started.append(spec)
        else:
            raise UsageError(f"--serve {spec}: unknown service {kind!r} (available: {', '.join(SIMPLE_SERVICES)})")
    return started


def cmd_up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host = _make_host(args, dhcp=args.dhcp)
    with host:
        try:
            services = _start_services(host, args.serve or [])
        except (OSError, ValueError) as err:
            raise UsageError(str(err)) from None
        print(f"ready {host.address} mac {host.mac or '-'} mtu {host.stack.mtu} link {host.raw_link.name}"
              + (f" serving {' '.join(services)}" if services else ""), flush=True)
        while not stop.is_set():
            stop.wait(0.5)
            if not host.running:
                print("usernet: runtime stopped unexpectedly", file=sys.stderr)
                return 1
    print("counters:")
    print(host.format_counters(), flush=True)
    return 0


# ----------------------------------------------------------------- ping

def cmd_ping(args: argparse.Namespace) -> int:
    from usernet.wire import ipv4

    try:
        ipv4.addr(args.destination)
    except ValueError:
        raise UsageError(f"{args.destination}: not an IPv4 address") from None
    if args.count is not None and args.count < 1:
        raise UsageError("-c: must be at least 1")
    if args.interval <= 0:
        raise UsageError("-i: must be positive")
    count = args.count if args.count is not None else 2**31
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host = _make_host(args)
    size = args.size
    print(f"PING {args.destination} ({args.destination}) {size}({size + 28}) bytes of data.", flush=True)

    def on_reply(info: dict[str, Any]) -> None:
        if "rtt" in info:
            dup = " (DUP!)" if info.get("duplicate") else ""
            bad = "" if info["ok"] else " (BAD CHECKSUM/DATA)"
            print(f"{info['size'] + 8} bytes from {info['src']}: icmp_seq={info['seq'] + 1} ttl={info['ttl']} "
                  f"time={info['rtt'] * 1000:.3f} ms{dup}{bad}", flush=True)
        elif "error_type" in info:
            print(f"From {info['src']} icmp_type={info['error_type']} code={info['code']}", flush=True)
        elif "error" in info:
            print(f"ping: sendmsg: {info['error']}", flush=True)

    started = time.monotonic()
    with host:
        from usernet.api.ping import ping

        rtts = ping(host, args.destination, count=count, interval=args.interval, size=size, timeout=args.wait,
                    on_reply=on_reply, should_stop=stop.is_set)
    elapsed = (time.monotonic() - started) * 1000
    sent = len(rtts)
    got = [r for r in rtts if r is not None]
    loss = 100.0 * (sent - len(got)) / sent if sent else 100.0
    print(f"\n--- {args.destination} ping statistics ---")
    print(f"{sent} packets transmitted, {len(got)} received, {loss:.0f}% packet loss, time {elapsed:.0f}ms")
    if got:
        ms = [r * 1000 for r in got]
        mdev = math.sqrt(statistics.pvariance(ms)) if len(ms) > 1 else 0.0
        print(f"rtt min/avg/max/mdev = {min(ms):.3f}/{statistics.fmean(ms):.3f}/{max(ms):.3f}/{mdev:.3f} ms")
    return 0 if got else 1


# ----------------------------------------------------------------- nc

def _pump_stdin(sock: Any, udp: bool, peer: tuple[str, int] | None) -> None:
    """stdin -> peer; on EOF half-close (TCP) so the peer sees the end of our stream."""
    stdin = sys.stdin.buffer
    try:
        while True:
            chunk = stdin.read1(65536) if hasattr(stdin, "read1") else stdin.read(65536)
            if not chunk:
                break
            if udp:
                if peer is None:
                    continue  # listening UDP: nobody to send to yet
                sock.sendto(chunk, peer)
            else:
                sock.sendall(chunk)
        if not udp:
            sock.shutdown(1)
    except OSError:
        pass


def cmd_nc(args: argparse.Namespace) -> int:
    import errno as errno_mod

    host = _make_host(args)
    out = sys.stdout.buffer
    kind = 2 if args.udp else 1
    with host:
        if args.listen:
            port = int(args.port_or_host)
            if not 0 < port < 65536:
                raise UsageError(f"bad port {args.port_or_host}")
            server = host.socket(type=kind)
            server.setsockopt(1, 2, 1)
            server.bind(("", port))
            if args.udp:
                sock = server
                data, peer = sock.recvfrom(65535)
                out.write(data)
                out.flush()
                sock.connect(peer)
            else:
                server.listen(1)
                sock, peer = server.accept()
                server.close()
        else:
            if args.port is None:
                raise UsageError("nc HOST PORT (or nc -l PORT)")
            peer = (args.port_or_host, int(args.port))
            sock = host.socket(type=kind)
            sock.settimeout(args.timeout)
            try:
                sock.connect(peer)
            except ConnectionRefusedError:
                print(f"usernet nc: connect to {peer[0]}:{peer[1]}: Connection refused", file=sys.stderr)
                return 1
            except TimeoutError:
                print(f"usernet nc: connect to {peer[0]}:{peer[1]}: timed out", file=sys.stderr)
                return 1
            sock.settimeout(None)
        threading.Thread(target=_pump_stdin, args=(sock, args.udp, peer), daemon=True).start()
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    if args.udp:
                        continue
                    break
                out.write(data)
                out.flush()
        except OSError as err:
            if err.errno not in (errno_mod.ECONNRESET, errno_mod.EBADF):
                print(f"usernet nc: {err}", file=sys.stderr)
                return 1
        finally:
            # Give our FIN (if stdin ended) time to be acknowledged before the host stops.
            deadline = time.monotonic() + 2
            conn = getattr(sock, "_conn", None)
            while conn is not None and conn.state not in ("CLOSED", "TIME-WAIT", "FIN-WAIT-2") \
                    and conn.fin_queued and time.monotonic() < deadline:
                time.sleep(0.01)
            sock.close()
    return 0


# ----------------------------------------------------------------- drill

def cmd_drill(args: argparse.Namespace) -> int:
    from usernet.drill import ScriptError, parse_script, run_script

    passed = failed = 0
    tolerance = args.tolerance_usecs / 1e6 if args.tolerance_usecs is not None else None
    for path in args.scripts:
        try:
            with open(path) as f:
                script = parse_script(f.read(), path)
        except OSError as err:
            raise UsageError(f"{path}: {err.strerror}") from None
        except ScriptError as err:
            print(f"FAIL {path}:{err.line}: {err}", flush=True)
            failed += 1
            continue
        result = run_script(script, tolerance=tolerance, relaxed=args.relaxed)
        if result.passed:
            passed += 1
            print(f"PASS {path}", flush=True)
        else:
            failed += 1
            print(f"FAIL {path}:{result.line}: {result.message}", flush=True)
        if args.verbose:
            for note in result.notes:
                print(f"     note: {note}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


# ----------------------------------------------------------------- demo

def cmd_demo(args: argparse.Namespace) -> int:
    from usernet.demo import run_demo

    return run_demo(trace=not args.quiet)


# ----------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="usernet", description="A userspace TCP/IP stack in pure Python.")
    from usernet import __version__

    parser.add_argument("--version", action="version", version=f"usernet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = sub.add_parser("up", help="run a host until SIGTERM/SIGINT")
    _add_link_options(up)
    up.add_argument("--dhcp", action="store_true", help="get the address by DHCP")
    up.add_argument("--serve", action="append", metavar="SPEC",
                    help="echo:PORT, discard:PORT, chargen:PORT (repeatable)")
    up.set_defaults(func=cmd_up)

    ping = sub.add_parser("ping", help="send ICMP echo requests")
    _add_link_options(ping)
    ping.add_argument("-c", dest="count", type=int, metavar="N", help="stop after N requests")
    ping.add_argument("-i", dest="interval", type=float, default=1.0, metavar="S", help="seconds between requests")
    ping.add_argument("-s", dest="size", type=int, default=56, metavar="SIZE", help="payload bytes (default 56)")
    ping.add_argument("-W", dest="wait", type=float, default=1.0, metavar="S",
                      help="seconds to wait for the last reply")
    ping.add_argument("destination", metavar="HOST")
    ping.set_defaults(func=cmd_ping)

    nc = sub.add_parser("nc", help="stdin to a TCP/UDP peer, the peer to stdout")
    _add_link_options(nc)
    nc.add_argument("-l", dest="listen", action="store_true", help="accept one connection on PORT")
    nc.add_argument("-u", dest="udp", action="store_true", help="UDP instead of TCP")
    nc.add_argument("-w", dest="timeout", type=float, default=10.0, metavar="S", help="connect timeout")
    nc.add_argument("port_or_host", metavar="HOST|PORT")
    nc.add_argument("port", nargs="?", metavar="PORT")
    nc.set_defaults(func=cmd_nc)

    drill = sub.add_parser("drill", help="run packetdrill-dialect scripts against usernet in virtual time")
    drill.add_argument("--tolerance-usecs", type=int, metavar="N", help="timing tolerance (default 4000)")
    drill.add_argument("--relaxed", action="store_true",
                       help="ignore what differs between correct stacks: SYN options, windows, PSH, buffer sizes")
    drill.add_argument("-v", "--verbose", action="count", default=0, help="print notes (skipped lines)")
    drill.add_argument("scripts", nargs="+", metavar="SCRIPT.pkt")
    drill.set_defaults(func=cmd_drill)

    demo = sub.add_parser("demo", help="hosts on an in-memory network talk to each other (no root needed)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no per-frame trace")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0)
    logging.basicConfig(level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if getattr(args, "size", 0) is not None and getattr(args, "size", 0) < 0:
        print("usernet: error: -s: must not be negative", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except UsageError as err:
        print(f"usernet: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
