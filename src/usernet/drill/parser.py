"""The packetdrill script language (as google/packetdrill, gVisor and the Linux selftests write it).

A script is a list of events, each with a time:

    0       socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
    +0      bind(3, ..., ...) = 0
    +0.1    < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
    +0      > S. 0:0(0) ack 1 <...>
    0.2...0.3 accept(3, ..., ...) = 4
    +0      `sysctl -q net.ipv4.tcp_timestamps=1`
    +0      %{ assert tcpi_state == TCP_ESTABLISHED }%

Times are absolute, relative (``+0.1``), any (``*``), ranged (``0.1~0.2``) or a blocking call's
start and end (``0.1...0.2``). Comments are ``//`` and ``/* */``. Lines starting with ``--`` set
options (``--tolerance_usecs=10000``, ``--local_ip=...``, ``--remote_ip=...``, ``--mtu=...``).

As packetdrill's lexer, whitespace between tokens is free (``1:1001 (1000)``), a backtick command
may span several lines, the flags field ``-`` is a segment with no flags at all, and an IP prefix
``(tos 0x..)``, ``(ttl N)``, ``[ect0]``... may follow the direction (see :class:`PacketEvent`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from usernet.wire import tcp as tcpwire


class ScriptError(ValueError):
    """A script the runner cannot understand: reported with its line number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class Time:
    kind: str            # "absolute", "relative", "any"
    start: float = 0.0
    end: float | None = None   # for ranges (~) and blocking calls (...)
    blocking: bool = False


@dataclass
class TcpOptionSpec:
    any: bool = False                      # <...>
    items: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class PacketEvent:
    direction: str                         # "<" inbound (we inject), ">" outbound (the stack must send)
    protocol: str                          # "tcp" or "icmp"
    flags: int = 0
    flags_any_ack: bool = False
    seq_start: int = 0
    seq_end: int = 0
    length: int = 0
    ack: int | None = None
    window: int | None = None
    options: TcpOptionSpec | None = None   # None: no options written in the script
    icmp: dict[str, Any] = field(default_factory=dict)
    # packetdrill's opt_ip_info, "(tos 0x10)", "(ttl 5)", "[ect0]": set on an inbound packet's IP
    # header, checked on an outbound one. ecn is the two ECN bits only ("ect01": either ECT).
    tos: int | None = None
    ecn: int | str | None = None
    ttl: int | None = None


@dataclass
class SyscallEvent:
    name: str
    args: list[Any]
    result: Any                            # int, or "..." for don't-care
    errno_name: str | None = None


@dataclass
class Event:
    line: int
    time: Time
    kind: str                              # "packet", "syscall", "shell", "python"
    packet: PacketEvent | None = None
    syscall: SyscallEvent | None = None
    text: str = ""


@dataclass
class Script:
    path: str
    events: list[Event]
    options: dict[str, str]


_FLAG_BITS = {"S": tcpwire.SYN, "F": tcpwire.FIN, "R": tcpwire.RST, "P": tcpwire.PSH, ".": tcpwire.ACK,
              "U": tcpwire.URG, "E": tcpwire.ECE, "W": tcpwire.CWR}
_TIME = r"(?:\*|[+]?\d*\.?\d+(?:\s*(?:~|\.\.\.)\s*[+]?\d*\.?\d+)?)"
_EVENT_START = re.compile(rf"^\s*({_TIME})\s+(.*)$", re.S)


def _strip_comments(text: str) -> str:
    """Blank out ``//`` and ``/* */`` comments, keeping line numbers (newlines stay). Inside a
    backtick command, a ``%{ }%`` block or a "string" nothing is a comment."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "`":
            end = text.find("`", i + 1)
            end = n if end < 0 else end + 1
        elif text.startswith("%{", i):
            end = text.find("}%", i + 2)
            end = n if end < 0 else end + 2
        elif c == '"':
            match = re.compile(r'"(?:[^"\\\n]|\\.)*"?').match(text, i)
            end = match.end() if match else i + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
            continue
        else:
            end = i + 1
        out.append(text[i:end])
        i = end
    return "".join(out)


def _parse_time(token: str) -> Time:
    if token == "*":
        return Time("any")
    token = re.sub(r"\s+", "", token)
    blocking = "..." in token
    parts = token.split("..." if blocking else "~")
    first = parts[0]
    kind = "relative" if first.startswith("+") else "absolute"
    start = float(first.lstrip("+") or 0)
    end = None
    if len(parts) == 2:
        # As packetdrill: after a relative start the end is relative to the previous event too
        # ("+0...0.100" ends 100 ms after the previous event); after an absolute start, absolute.
        end = float(parts[1].lstrip("+"))
    return Time(kind, start, end, blocking)


def _split_events(text: str) -> list[tuple[int, str]]:
    """Group lines into events: a new event starts with a time; a backtick command or a %{ }%
    block left open on a line goes on over the following lines (as in packetdrill's lexer)."""
    events: list[tuple[int, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        start_line = i + 1
        chunk = line
        while i + 1 < len(lines) and _open_block(chunk):
            i += 1
            chunk += "\n" + lines[i]
        events.append((start_line, chunk.strip()))
        i += 1
    return events


def _open_block(chunk: str) -> bool:
    """Whether *chunk* ends inside a backtick command or a %{ }% block."""
    i, n = 0, len(chunk)
    while i < n:
        if chunk[i] == "`":
            end = chunk.find("`", i + 1)
            if end < 0:
                return True
            i = end + 1
        elif chunk.startswith("%{", i):
            end = chunk.find("}%", i + 2)
            if end < 0:
                return True
            i = end + 2
        else:
            i += 1
    return False


def parse_script(text: str, path: str = "<script>") -> Script:
    options: dict[str, str] = {}
    events: list[Event] = []
    for line_no, chunk in _split_events(_strip_comments(text)):
        if chunk.startswith("--"):
            key, _, value = chunk[2:].partition("=")
            options[key.strip().replace("-", "_")] = value.strip()
            continue
        if chunk.startswith("`"):  # a shell command with no time: at the previous event's time
            events.append(Event(line_no, Time("relative", 0.0), "shell", text=_backticked(line_no, chunk)))
            continue
        if chunk.startswith("%{"):  # a python block with no time: runs at the previous event's time
            events.append(Event(line_no, Time("relative", 0.0), "python", text=chunk[2:].rsplit("}%", 1)[0]))
            continue
        match = _EVENT_START.match(chunk)
        if not match:
            raise ScriptError(line_no, f"expected a time at the start of: {chunk[:60]!r}")
        time = _parse_time(match.group(1))
        body = match.group(2).strip()
        if body.startswith("`"):
            events.append(Event(line_no, time, "shell", text=_backticked(line_no, body)))
        elif body.startswith("%{"):
            events.append(Event(line_no, time, "python", text=body[2:].rsplit("}%", 1)[0]))
        elif body[:1] in "<>":
            events.append(Event(line_no, time, "packet", packet=_parse_packet(line_no, body)))
        else:
            events.append(Event(line_no, time, "syscall", syscall=_parse_syscall(line_no, body)))
    return Script(path, events, options)


def _backticked(line: int, body: str) -> str:
    if len(body) < 2 or not body.endswith("`"):
        raise ScriptError(line, "unterminated backtick command")
    return body[1:-1]


# ----------------------------------------------------------------- packets

_TCP_RE = re.compile(
    r"^(?P<flags>[SFRPUEW.]+|-)\s+(?P<start>\d+)\s*:\s*(?P<end>\d+)\s*\(\s*(?P<len>\d+)\s*\)"
    r"(?P<rest>.*)$", re.S)
_IP_INFO_RE = re.compile(r"^(\(([^)]*)\)|\[([^\]]*)\])\s*")
_ECN = {"noecn": 0, "ect1": 1, "ect0": 2, "ce": 3, "ect01": "ect01"}


def _parse_packet(line: int, body: str) -> PacketEvent:
    direction = body[0]
    rest = body[1:].strip()
    ip_info: dict[str, Any] = {}
    info = _IP_INFO_RE.match(rest)
    if info:
        ip_info = _parse_ip_info(line, info.group(2) if info.group(2) is not None else info.group(3))
        rest = rest[info.end():]
    if rest.startswith("icmp"):
        return PacketEvent(direction, "icmp", icmp=_parse_icmp(line, rest), **ip_info)
    if rest.startswith("udp"):
        raise ScriptError(line, "only TCP and ICMP packets are supported")
    match = _TCP_RE.match(rest)
    if not match:
        raise ScriptError(line, f"cannot parse TCP packet: {body!r}")
    flags = 0
    for char in match.group("flags").replace("-", ""):
        flags |= _FLAG_BITS[char]
    packet = PacketEvent(direction, "tcp", flags=flags, seq_start=int(match.group("start")),
                         seq_end=int(match.group("end")), length=int(match.group("len")), **ip_info)
    if packet.seq_end - packet.seq_start != packet.length:
        raise ScriptError(line, "sequence range and length disagree")
    tail = match.group("rest").strip()
    while tail:
        if tail.startswith("ack "):
            value, tail = _take_word(tail[4:])
            packet.ack = int(value)
        elif tail.startswith("win "):
            value, tail = _take_word(tail[4:])
            packet.window = int(value)
        elif tail.startswith("urg "):
            _, tail = _take_word(tail[4:])
        elif tail.startswith("<"):
            close = tail.find(">")
            if close < 0:
                raise ScriptError(line, "unterminated option list")
            packet.options = _parse_options(line, tail[1:close])
            tail = tail[close + 1:].strip()
        else:
            raise ScriptError(line, f"unexpected {tail[:20]!r} in packet")
    return packet


def _parse_ip_info(line: int, text: str) -> dict[str, Any]:
    """packetdrill's ip_info: "tos 0x10", "ttl 5", "ect0" (noecn, ect1, ce, ect01), optionally
    followed by ", flowlabel 0x..." (an IPv6 field, accepted and ignored on IPv4)."""
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        try:
            if words[0] == "tos":
                out["tos"] = int(words[1], 16) & 0xFF
            elif words[0] == "ttl":
                out["ttl"] = int(words[1]) & 0xFF
            elif words[0] in _ECN and len(words) == 1:
                out["ecn"] = _ECN[words[0]]
            elif words[0] == "flowlabel":
                int(words[1], 16)
            else:
                raise ValueError
        except (IndexError, ValueError):
            raise ScriptError(line, f"bad IP field {item!r}") from None
    return out


def _take_word(text: str) -> tuple[str, str]:
    parts = text.strip().split(None, 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _parse_options(line: int, text: str) -> TcpOptionSpec:
    text = text.strip()
    if text == "...":
        return TcpOptionSpec(any=True)
    spec = TcpOptionSpec()
    for raw in filter(None, (item.strip() for item in text.split(","))):
        words = raw.split()
        name = words[0]
        try:
            if name in ("nop", "eol", "sackOK"):
                spec.items.append((name, None))
            elif name == "mss":
                spec.items.append(("mss", int(words[1])))
            elif name == "wscale":
                spec.items.append(("wscale", int(words[1])))
            elif name == "TS":
                spec.items.append(("TS", (int(words[2]), int(words[4]))))
            elif name == "sack":
                blocks = [tuple(int(x) for x in b.split(":")) for b in words[1:]]
                spec.items.append(("sack", blocks))
            else:
                raise ScriptError(line, f"unknown TCP option {name!r}")
        except (IndexError, ValueError):
            raise ScriptError(line, f"bad TCP option {raw!r}") from None
    return spec


def _parse_icmp(line: int, text: str) -> dict[str, Any]:
    words = text.split()
    info: dict[str, Any] = {"type": words[1] if len(words) > 1 else ""}
    if len(words) > 2:
        info["code"] = words[2]
    if "mtu" in words:
        info["mtu"] = int(words[words.index("mtu") + 1])
    return info


# ----------------------------------------------------------------- system calls

_SYSCALL_RE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s*=\s*(?P<result>\S+)(?:\s+(?P<errno>E\w+))?.*$", re.S)


def _parse_syscall(line: int, body: str) -> SyscallEvent:
    match = _SYSCALL_RE.match(body)
    if not match:
        raise ScriptError(line, f"cannot parse system call: {body!r}")
    result_text = match.group("result")
    result: Any = "..." if result_text == "..." else _parse_int(line, result_text)
    return SyscallEvent(match.group("name"), _parse_args(line, match.group("args")), result, match.group("errno"))


def _parse_int(line: int, text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ScriptError(line, f"expected a number, got {text!r}") from None


class _Args:
    """A tiny recursive-descent reader for argument lists: ints, names (A|B), ..., "str", [x], {k=v}."""

    def __init__(self, line: int, text: str) -> None:
        self.line = line
        self.tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\.\.\.|[\[\]{}(),=|]|[^\s\[\]{}(),=|]+', text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ScriptError(self.line, "unexpected end of arguments")
        self.pos += 1
        return token

    def value(self) -> Any:
        token = self.take()
        if token == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.take()
            self.take()
            return items
        if token == "{":
            # {fd=4, events=POLLIN}, {msg_name(...)=..., msg_iov(1)=[...]}, or positional
            # items such as an iovec {..., 100}, kept in order under "_items".
            fields: dict[str, Any] = {}
            positional: list[Any] = []
            while self.peek() != "}":
                if self.peek() is None:
                    raise ScriptError(self.line, "unterminated {")
                start = self.pos
                key = self.take()
                if self.peek() == "(" and key.isidentifier():
                    depth = 0
                    while True:
                        part = self.take()
                        depth += {"(": 1, ")": -1}.get(part, 0)
                        if depth == 0:
                            break
                if self.peek() == "=" and key.isidentifier():
                    self.take()
                    fields[key] = self.value()
                else:
                    self.pos = start
                    positional.append(self.value())
                if self.peek() == ",":
                    self.take()
            self.take()
            if positional:
                fields["_items"] = positional
            return fields
        if token.startswith('"'):
            return token[1:-1]
        if token == "...":
            return ...
        value: Any
        try:
            value = int(token, 0)
        except ValueError:
            value = token
        while self.peek() == "|":  # O_RDWR|O_NONBLOCK
            self.take()
            value = ("|", value, self.value())
        if self.peek() == "(":  # htons(8080), inet_addr("1.2.3.4")
            self.take()
            inner = self.value() if self.peek() != ")" else None
            self.take()
            value = (value, inner)
        return value

    def all(self) -> list[Any]:
        values = []
        while self.peek() is not None:
            values.append(self.value())
            if self.peek() == ",":
                self.take()
        return values


def _parse_args(line: int, text: str) -> list[Any]:
    return _Args(line, text).all()
