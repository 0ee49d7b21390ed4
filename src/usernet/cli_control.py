"""The commands that look into a running host over its control socket (usernet.control):
``usernet ss``, ``neigh``, ``route``, ``addr``, ``stats``, ``tcpdump``, ``ls``.

Output follows iproute2 (``ss``, ``ip neigh``, ``ip route``, ``ip addr``) and ``netstat -s``.
Exit codes: 0 success (Ctrl-C ends ``stats --watch`` and ``tcpdump`` with 0), 1 no such host or the
host refused, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import base64
import errno
import glob
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from usernet.control import DEFAULT_DIR, ControlClient, ControlError, compile_filter, default_path, valid_name

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Failed(Exception):
    """One line on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------- finding the host

def running_hosts(directory: str = DEFAULT_DIR, timeout: float = 2.0) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(socket path, info)`` of every live host with a socket in *directory* (stale ones skipped)."""
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*.sock"))):
        try:
            with ControlClient(path, timeout=timeout) as client:
                info = client.request("info")
        except (ControlError, ValueError):
            continue  # stale, another user's, or not ours at all
        if isinstance(info, dict):
            yield path, info


def _socket_path(args: argparse.Namespace) -> str:
    if args.control:
        return str(args.control)
    if args.host:
        if not valid_name(args.host):
            raise _Failed(f"--host {args.host}: not a host name", EXIT_USAGE)
        path = default_path(args.host)
        if not os.path.exists(path):
            raise _Failed(f"no host {args.host} is running here (no {path})")
        return path
    live = list(running_hosts())
    if not live:
        raise _Failed(f"no usernet host is running here (no live control socket in {DEFAULT_DIR}; "
                      f"start one with usernet up, or give --control PATH)")
    if len(live) > 1:
        names = ", ".join(str(info.get("name")) for _, info in live)
        raise _Failed(f"{len(live)} hosts are running ({names}): choose one with --host NAME", EXIT_USAGE)
    return live[0][0]


def _connect(args: argparse.Namespace, timeout: float | None = 10.0) -> ControlClient:
    path = _socket_path(args)
    try:
        return ControlClient(path, timeout=timeout)
    except ControlError as err:
        if err.errno == errno.ECONNREFUSED:
            raise _Failed(f"no host is running at {path} (a stale socket)") from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise _Failed(f"{path}: permission denied (the host belongs to another user)") from None
        if err.errno == errno.ENOENT:
            raise _Failed(f"no host is running at {path} (no such file)") from None
        raise _Failed(str(err)) from None


def _ask(args: argparse.Namespace, cmd: str, **request: Any) -> Any:
    with _connect(args) as client:
        try:
            return client.request(cmd, **request)
        except ControlError as err:
            raise _Failed(f"{cmd}: {err.strerror or err}") from None
        except ValueError as err:
            raise _Failed(f"{cmd}: the host's answer is not JSON ({err})") from None


def _command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except _Failed as failed:
            try:
                print(f"usernet: error: {failed}", file=sys.stderr, flush=True)
            except (OSError, ValueError):
                pass
            return failed.code

    return run


# ----------------------------------------------------------------- ss

def _ss_selected(row: dict[str, Any], args: argparse.Namespace) -> bool:
    if (args.tcp or args.udp) and not ((args.tcp and row["netid"] == "tcp") or (args.udp and row["netid"] == "udp")):
        return False
    listening = row["state"] in ("LISTEN", "UNCONN")
    if args.all:
        return True
    if args.listening:
        return listening
    # iproute2's default: connected sockets, not TIME-WAIT nor SYN-RECV (ss.c SS_CONN)
    return not listening and row["state"] not in ("TIME-WAIT", "SYN-RECV", "CLOSED")


def format_tcp_info(info: dict[str, Any]) -> str:
    """The line ``ss -i`` prints under a TCP connection."""
    parts = []
    if info.get("timestamps"):
        parts.append("ts")
    if info.get("sack"):
        parts.append("sack")
    parts.append(str(info.get("congestion", "")))
    if info.get("wscale"):
        parts.append(f"wscale:{info['snd_wscale']},{info['rcv_wscale']}")
    parts.append(f"rto:{info['rto_ms']:g}")
    if info.get("srtt_ms") is not None:
        parts.append(f"rtt:{info['srtt_ms']:g}/{info['rttvar_ms']:g}")
    parts.append(f"mss:{info['mss']}")
    parts.append(f"cwnd:{info['cwnd']}")
    if int(info.get("ssthresh", 0)) < 0xFFFF:  # Linux hides an infinite ssthresh too
        parts.append(f"ssthresh:{info['ssthresh']}")
    parts.append(f"bytes_acked:{info['bytes_acked']}")
    parts.append(f"bytes_received:{info['bytes_received']}")
    if info.get("unacked"):
        parts.append(f"unacked:{info['unacked']}")
    parts.append(f"retrans:{info['retransmits']}/{info['total_retrans']}")
    parts.append(f"sacked:{info['sacked']}")
    parts.append(f"sack_acks:{info['sack_acks']}")
    parts.append(f"dsack_dups:{info['dsack_dups']}")
    parts.append(f"dsacks_sent:{info['dsacks_sent']}")
    parts.append(f"lastrcv:{info['lastrcv_ms']}")
    parts.append(f"snd_wnd:{info['snd_wnd']}")
    parts.append(f"rcv_wnd:{info['rcv_wnd']}")
    if info.get("in_recovery"):
        parts.append("recovery")
    return "\t " + " ".join(parts)


def format_ss(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    chosen = [row for row in rows if _ss_selected(row, args)]
    chosen.sort(key=lambda r: (r["netid"], r["state"] != "LISTEN", r["local"], r["peer"]))
    header = ("Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")
    table = [header] + [(r["netid"], r["state"], str(r["recv_q"]), str(r["send_q"]), r["local"], r["peer"])
                        for r in chosen]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for i, line in enumerate(table):
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1]), line[2].rjust(widths[2]),
                 line[3].rjust(widths[3]), line[4].rjust(widths[4]), line[5].ljust(widths[5])]
        lines.append(" ".join(cells).rstrip())
        if i and args.info and "info" in chosen[i - 1]:
            lines.append(format_tcp_info(chosen[i - 1]["info"]))
    return lines


@_command
def cmd_ss(args: argparse.Namespace) -> int:
    rows = _ask(args, "ss")
    for line in format_ss(rows, args):
        print(line)
    sys.stdout.flush()
    return 0


# ----------------------------------------------------------------- neigh, route, addr

def format_neigh(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{row['address']} dev {row['dev']} " + (f"lladdr {row['mac']} " if row.get("mac") else "") + row["state"]
            for row in rows]


def format_route(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        line = str(row["destination"])
        if row.get("via"):
            line += f" via {row['via']}"
        line += f" dev {row['dev']}"
        if row.get("kind") == "connected":
            line += " proto kernel scope link"
        if row.get("src"):
            line += f" src {row['src']}"
        if row.get("metric"):
            line += f" metric {row['metric']}"
        lines.append(line)
    return lines


_LINK_KINDS = {"loopback": ("LOOPBACK,UP", "loopback"), "ether": ("BROADCAST,MULTICAST,UP", "ether"),
               "ip": ("POINTOPOINT,NOARP,UP", "none")}


def format_addr(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        flags, link = _LINK_KINDS.get(row["kind"], ("UP", row["kind"]))
        lines.append(f"{row['index']}: {row['name']}: <{flags}> mtu {row['mtu']} state UP")
        if link == "none":
            lines.append("    link/none")
        else:
            mac = row.get("mac") or "00:00:00:00:00:00"
            lines.append(f"    link/{link} {mac}" + (" brd ff:ff:ff:ff:ff:ff" if link == "ether" else ""))
        scope = "host" if row["kind"] == "loopback" else "global"
        for address in row["addresses"]:
            lines.append(f"    inet {address} scope {scope} {row['name']}")
        stats = row.get("stats") or {}
        lines.append(f"    RX: packets {stats.get('rx_packets', 0)}  TX: packets {stats.get('tx_packets', 0)}")
    return lines


def _printer(cmd: str, formatter: Callable[[list[dict[str, Any]]], list[str]]) -> Callable[[argparse.Namespace], int]:
    @_command
    def run(args: argparse.Namespace) -> int:
        for line in formatter(_ask(args, cmd)):
            print(line)
        sys.stdout.flush()
        return 0

    return run


# ----------------------------------------------------------------- stats

def format_stats(counters: dict[str, int]) -> str:
    from usernet.stack.counters import Counters

    table = Counters()
    table.update({str(k): int(v) for k, v in counters.items()})
    return table.format()


@_command
def cmd_stats(args: argparse.Namespace) -> int:
    if not args.watch:
        print(format_stats(_ask(args, "stats")), flush=True)
        return 0
    tty = sys.stdout.isatty()
    try:
        with _connect(args) as client:
            while True:
                try:
                    counters = client.request("stats")
                except ControlError as err:
                    raise _Failed(f"stats: {err.strerror or err}") from None
                text = format_stats(counters)
                stamp = time.strftime("%H:%M:%S")
                print(("\033[H\033[J" if tty else "") + f"Every 1.0s: usernet stats  {stamp}\n\n{text}\n", flush=True)
                time.sleep(1.0)
    except KeyboardInterrupt:
        return 0


# ----------------------------------------------------------------- tcpdump

class _PcapOut:
    """Classic pcap records to a binary stream, flushed per packet (so a pipe reader follows)."""

    def __init__(self, out: IO[bytes], layer: int) -> None:
        from usernet.links.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, SNAPLEN

        self.out = out
        self.layer = layer
        self.snaplen = SNAPLEN
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN,
                              LINKTYPE_ETHERNET if layer == 2 else LINKTYPE_RAW))
        out.flush()

    def write(self, stamp: float, frame: bytes, layer: int) -> bool:
        if layer != self.layer:
            if self.layer == 2:  # a TUN interface's packet in an Ethernet capture: a made-up header
                frame = bytes(12) + b"\x08\x00" + frame
            elif len(frame) >= 14 and frame[12:14] == b"\x08\x00":
                frame = frame[14:]
            else:
                return False  # no IPv4 in it: nothing a raw-IP capture can hold
        seconds = int(stamp)
        self.out.write(struct.pack("<IIII", seconds, int((stamp - seconds) * 1e6), min(len(frame), self.snaplen),
                                   len(frame)))
        self.out.write(frame[:self.snaplen])
        self.out.flush()
        return True


@_command
def cmd_tcpdump(args: argparse.Namespace) -> int:
    try:
        compile_filter(args.filter)
    except ValueError as err:
        raise _Failed(f"tcpdump: {err}", EXIT_USAGE) from None
    if args.count is not None and args.count < 1:
        raise _Failed(f"-c {args.count}: must be at least 1", EXIT_USAGE)
    if args.write not in (None, "-"):
        directory = os.path.dirname(os.path.abspath(args.write))
        if not os.path.isdir(directory):
            raise _Failed(f"-w {args.write}: no such directory {directory}", EXIT_USAGE)
    client = _connect(args)
    captured = dropped = 0
    output: IO[bytes] | None = None
    try:
        try:
            start = client.request("tcpdump", filter=list(args.filter))
        except ControlError as err:
            raise _Failed(f"tcpdump: {err.strerror or err}") from None
        layer = int(start.get("layer", 2))
        kind = "EN10MB (Ethernet)" if layer == 2 else "RAW (Raw IP)"
        print(f"listening on {start.get('interface')}, link-type {kind}", file=sys.stderr, flush=True)
        pcap: _PcapOut | None = None
        formatter: Any = None
        if args.write == "-":
            output = sys.stdout.buffer
            pcap = _PcapOut(output, layer)
        elif args.write:
            try:
                output = open(args.write, "wb")  # noqa: SIM115 - closed in finally
            except OSError as err:
                raise _Failed(f"-w {args.write}: {err.strerror}", EXIT_USAGE) from None
            pcap = _PcapOut(output, layer)
        else:
            from usernet.links.trace import TraceFormatter

            formatter = TraceFormatter(verbose=args.detail)
        try:
            for message in client.stream():
                if "dropped" in message:
                    dropped = int(message["dropped"])
                    continue
                frame = base64.b64decode(message["frame"])
                stamp = float(message["t"])
                if pcap is not None:
                    if not pcap.write(stamp, frame, int(message["layer"])):
                        continue
                else:
                    summary, extra = formatter.lines(frame, int(message["layer"]))
                    clock = time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int((stamp % 1) * 1e6):06d}"
                    sys.stdout.write("\n".join([f"{clock} {message['if']} {message['dir']} {summary}", *extra])
                                     + "\n")
                    sys.stdout.flush()
                captured += 1
                if args.count is not None and captured >= args.count:
                    break
        except KeyboardInterrupt:
            pass
        except (ControlError, ValueError, KeyError) as err:
            raise _Failed(f"tcpdump: the stream broke off ({err})") from None
    finally:
        client.close()
        if output is not None and output is not sys.stdout.buffer:
            output.close()
    print(f"{captured} packet{'s' if captured != 1 else ''} captured\n"
          f"{dropped} packet{'s' if dropped != 1 else ''} dropped by usernet (the reader was too slow)",
          file=sys.stderr, flush=True)
    return 0


# ----------------------------------------------------------------- ls

@_command
def cmd_ls(args: argparse.Namespace) -> int:
    rows = [(str(info.get("name", "?")), str(info.get("pid", "?")), " ".join(info.get("addresses") or []) or "-")
            for _, info in running_hosts(args.dir)]
    if not rows:
        return 0
    table = [("NAME", "PID", "ADDRESSES"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    for name, pid, addresses in table:
        print(f"{name.ljust(widths[0])}  {pid.rjust(widths[1])}  {addresses}")
    sys.stdout.flush()
    return 0


# ----------------------------------------------------------------- parsers

def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", metavar="NAME",
                        help=f"the host named NAME ({DEFAULT_DIR}/NAME.sock; default: the only one running)")
    parser.add_argument("--control", metavar="PATH", help="the host's control socket at PATH")


def add_parsers(sub: Any) -> None:
    """The client commands, as subcommands of ``usernet``."""
    ss = sub.add_parser("ss", help="a running host's sockets, like iproute2's ss",
                        description="TCP and UDP sockets of a running host (its control socket). Default: "
                                    "connected sockets; -l listening ones, -a all; -i TCP internals.")
    ss.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    ss.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    ss.add_argument("-l", "--listening", action="store_true", help="listening (and unconnected UDP) sockets only")
    ss.add_argument("-a", "--all", action="store_true", help="listening and connected sockets")
    ss.add_argument("-i", "--info", action="store_true",
                    help="TCP internals: cwnd, ssthresh, rtt, rto, retransmits, SACK/D-SACK counts, mss, wscale")
    ss.add_argument("-n", "--numeric", action="store_true", help="numeric addresses (always)")
    _add_target(ss)
    ss.set_defaults(func=cmd_ss)

    for name, what, formatter in (("neigh", "neighbour (ARP) cache, like ip neigh", format_neigh),
                                  ("route", "routes, like ip route", format_route),
                                  ("addr", "interfaces and addresses, like ip addr", format_addr)):
        parser = sub.add_parser(name, help=f"a running host's {what}")
        _add_target(parser)
        parser.set_defaults(func=_printer(name, formatter))

    stats = sub.add_parser("stats", help="a running host's counters, like netstat -s")
    stats.add_argument("--watch", action="store_true", help="refresh once a second until Ctrl-C")
    _add_target(stats)
    stats.set_defaults(func=cmd_stats)

    tcpdump = sub.add_parser("tcpdump", help="live frames of a running host, as text or pcap",
                             description="Every frame a running host sends and receives, printed as --trace "
                                         "does, or as pcap (-w FILE, -w - for stdout: usernet tcpdump -w - | "
                                         "tshark -r -). FILTER: [src|dst] host A.B.C.D, [src|dst] port N, tcp, "
                                         "udp, icmp, arp, ip, with and (or nothing), or, not, parentheses.")
    tcpdump.add_argument("-w", dest="write", metavar="FILE", help="write pcap to FILE (- for stdout)")
    tcpdump.add_argument("-c", dest="count", type=int, metavar="COUNT", help="exit after COUNT frames")
    tcpdump.add_argument("-v", dest="detail", action="count", default=0, help="more detail per frame (-vv all)")
    _add_target(tcpdump)
    tcpdump.add_argument("filter", nargs="*", metavar="FILTER")
    tcpdump.set_defaults(func=cmd_tcpdump)

    ls = sub.add_parser("ls", help=f"the hosts running on this machine (control sockets in {DEFAULT_DIR})")
    ls.add_argument("--dir", default=DEFAULT_DIR, help=argparse.SUPPRESS)
    ls.set_defaults(func=cmd_ls)
