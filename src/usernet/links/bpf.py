"""Classic BPF socket filters for the packet link: shed load in the kernel, before Python sees it.

A frame the runtime reads costs a system call and a Python object before the stack can even look
at it; at the frame rates one flooding peer reaches here (a quarter of a million a second and more)
that alone saturates the runtime, and the kernel then drops frames from the socket's full buffer
at random, the legitimate ones with the flood. A socket filter (SO_ATTACH_FILTER, the same
mechanism tcpdump uses; setting it again swaps the program atomically) drops chosen frames
in the kernel instead, at no cost to us. Two programs:

* the base filter, always on: frames another host's unicast MAC is addressed to and EtherTypes the
  stack does not speak (only IPv4 and ARP). A NIC drops these in hardware too; the stack would
  count and drop them at the Ethernet header.
* the overload filter, installed by :class:`OverloadControl` while the runtime cannot keep up:
  also frames no stack could parse (IPv4 version not 4, header length below 20, total length
  beyond the frame; ARP shorter than its 28 bytes), uncounted, and a random share of pure SYNs
  (SYN set; ACK, RST and FIN clear), the cheapest traffic to refuse and the costliest to answer,
  and likewise of IPv4 fragments (which the reassembly table bounds, but only after each costs a
  receive and a parse), each share cut only while its kind is most of what arrives. Segments of established
  connections, ARP, ICMP and everything else keep flowing, so the kernel stops dropping at
  random. SYNs from peers that completed a handshake in the last minute are never shed (their
  address answered our SYN-ACK, so it is not spoofed, as a DDoS scrubber's "SYN authentication"
  whitelists it); a new client's SYN is shed with the same probability as a flood's, and its
  retransmission gets another chance.

The programs are plain bytes built here (no libpcap); ctypes only supplies the pointer that
``struct sock_fprog`` needs.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27

# Instruction classes, sizes, modes, operations (linux/filter.h, linux/bpf_common.h).
_LD, _LDX, _ALU, _JMP, _RET = 0x00, 0x01, 0x04, 0x05, 0x06
_W, _H, _B = 0x00, 0x08, 0x10
_ABS, _IND, _MSH = 0x20, 0x40, 0xA0
_JEQ, _JGT, _JGE, _JSET = 0x10, 0x20, 0x30, 0x40
_ADD, _AND = 0x00, 0x50
_LEN = 0x80
_K, _X = 0x00, 0x08
_SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF  # ld: a fresh 32-bit random number
ACCEPT = 0x40000  # bytes of the frame to keep: all of it (frames here are at most 64 KB + headers)

ETHERTYPE_IPV4, ETHERTYPE_ARP = 0x0800, 0x0806
_TCP_FLAG_MASK = 0x17  # FIN | SYN | RST | ACK
_PURE_SYN = 0x02


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


class _Program:
    """Assembles instructions whose jumps name labels; resolves them to relative offsets."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str | None, str | None, int] | str] = []

    def op(self, code: int, k: int = 0) -> None:
        self.items.append((code, None, None, k & 0xFFFFFFFF))

    def jump(self, code: int, k: int, true: str | None, false: str | None) -> None:
        """A conditional jump; None falls through to the next instruction."""
        self.items.append((code, true, false, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.items.append(name)

    def assemble(self) -> list[Insn]:
        positions: dict[str, int] = {}
        count = 0
        for item in self.items:
            if isinstance(item, str):
                positions[item] = count
            else:
                count += 1
        out: list[Insn] = []
        for item in self.items:
            if isinstance(item, str):
                continue
            code, true, false, k = item
            here = len(out)

            def offset(target: str | None, here: int = here) -> int:
                if target is None:
                    return 0
                distance = positions[target] - here - 1
                if not 0 <= distance <= 255:
                    raise ValueError(f"BPF jump to {target} out of range")
                return distance

            out.append(Insn(code, offset(true), offset(false), k))
        return out


MAX_ADMITTED = 32  # validated sources compared one instruction each


def frame_filter(mac: bytes, promisc: bool = False, overload: bool = False, syn_keep: float = 1.0,
                 admitted: Sequence[int] = (), frag_keep: float = 1.0) -> list[Insn]:
    """The program for a link whose own MAC is *mac* (see the module docstring).

    *promisc* keeps every destination MAC; *overload* adds the IPv4 sanity checks and keeps a
    fraction *syn_keep* (0..1) of pure SYNs, all of those from the *admitted* source addresses
    (peers that completed a handshake lately; at most MAX_ADMITTED), and *frag_keep* of IPv4
    fragments, whatever their source."""
    p = _Program()
    if not promisc:
        # Group addresses (broadcast, multicast) have bit 0 of the first byte set.
        p.op(_LD | _B | _ABS, 0)
        p.jump(_JMP | _JSET | _K, 0x01, "mac_ok", None)
        p.op(_LD | _W | _ABS, 2)
        p.jump(_JMP | _JEQ | _K, int.from_bytes(mac[2:6], "big"), None, "drop")
        p.op(_LD | _H | _ABS, 0)
        p.jump(_JMP | _JEQ | _K, int.from_bytes(mac[0:2], "big"), None, "drop")
    p.label("mac_ok")
    p.op(_LD | _H | _ABS, 12)
    if overload:
        p.jump(_JMP | _JEQ | _K, ETHERTYPE_ARP, None, "not_arp")
        p.op(_LD | _W | _LEN)
        p.jump(_JMP | _JGE | _K, 14 + 28, "accept", "drop")  # a whole ARP packet (RFC 826)
        p.label("not_arp")
    else:
        p.jump(_JMP | _JEQ | _K, ETHERTYPE_ARP, "accept", None)
    p.jump(_JMP | _JEQ | _K, ETHERTYPE_IPV4, None, "drop")
    if overload:
        # RFC 791: the total length must fit in the frame (Ethernet may pad, never truncate).
        p.op(_LDX | _W | _LEN)
        p.op(_LD | _H | _ABS, 14 + 2)
        p.op(_ALU | _ADD | _K, 14)
        p.jump(_JMP | _JGT | _X, 0, "drop", None)
        p.op(_LD | _B | _ABS, 14)
        p.op(_ALU | _AND | _K, 0xF0)
        p.jump(_JMP | _JEQ | _K, 0x40, None, "drop")
        p.op(_LD | _B | _ABS, 14)
        p.op(_ALU | _AND | _K, 0x0F)
        p.jump(_JMP | _JGE | _K, 5, None, "drop")
        if frag_keep < 1.0:
            p.op(_LD | _H | _ABS, 14 + 6)
            p.jump(_JMP | _JSET | _K, 0x3FFF, None, "not_fragment")  # MF set or an offset: a fragment
            _keep_share(p, frag_keep, ())  # from any source: a spoofed fragment flood can carry a peer's
            p.label("not_fragment")
        if syn_keep < 1.0:
            p.op(_LD | _B | _ABS, 14 + 9)
            p.jump(_JMP | _JEQ | _K, socket.IPPROTO_TCP, None, "accept")
            p.op(_LD | _H | _ABS, 14 + 6)
            p.jump(_JMP | _JSET | _K, 0x1FFF, "accept", None)  # a later fragment: no TCP header in it
            p.op(_LDX | _B | _MSH, 14)  # X = IPv4 header length
            p.op(_LD | _B | _IND, 14 + 13)  # the TCP flags
            p.op(_ALU | _AND | _K, _TCP_FLAG_MASK)
            p.jump(_JMP | _JEQ | _K, _PURE_SYN, None, "accept")
            _keep_share(p, syn_keep, admitted)
    p.label("accept")
    p.op(_RET | _K, ACCEPT)
    p.label("drop")
    p.op(_RET | _K, 0)
    return p.assemble()


def _keep_share(p: _Program, keep: float, admitted: Sequence[int]) -> None:
    """Accept what comes from an admitted source, and a random *keep* share of the rest."""
    if admitted:
        p.op(_LD | _W | _ABS, 14 + 12)  # the source address
        for address in list(admitted)[:MAX_ADMITTED]:
            p.jump(_JMP | _JEQ | _K, address, "accept", None)
    p.op(_LD | _W | _ABS, _SKF_AD_RANDOM)
    p.jump(_JMP | _JGE | _K, syn_threshold(keep), "drop", "accept")


def syn_threshold(keep: float) -> int:
    """The random value below which a SYN is kept."""
    keep = min(1.0, max(0.0, keep))
    return min(0xFFFFFFFF, int(keep * 0x100000000))


def encode(program: list[Insn]) -> bytes:
    return b"".join(struct.pack("HBBI", i.code, i.jt, i.jf, i.k) for i in program)


def attach(sock: socket.socket, program: list[Insn]) -> None:
    """Install *program* on *sock*, replacing any filter it had (atomically, in the kernel)."""
    code = ctypes.create_string_buffer(encode(program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(code))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def run(program: list[Insn], frame: bytes, random_value: int = 0) -> int:
    """Interpret *program* on *frame* as the kernel would (what this module's tests check the
    programs with; the kernel's verdict is checked on a real socket too). Returns the bytes kept."""
    a = x = 0
    pc = 0
    while True:
        insn = program[pc]
        pc += 1
        cls = insn.code & 0x07
        if cls in (_LD, _LDX):
            mode, size = insn.code & 0xE0, insn.code & 0x18
            if cls == _LDX and mode == _MSH:
                if insn.k >= len(frame):
                    return 0
                x = (frame[insn.k] & 0x0F) * 4
                continue
            if mode == _LEN:
                if cls == _LD:
                    a = len(frame)
                else:
                    x = len(frame)
                continue
            if insn.k == _SKF_AD_RANDOM:
                a = random_value
                continue
            at = insn.k + (x if mode == _IND else 0)
            width = {_W: 4, _H: 2, _B: 1}[size]
            if at + width > len(frame):
                return 0  # a load beyond the frame ends the program with "drop", as in the kernel
            value = int.from_bytes(frame[at:at + width], "big")
            if cls == _LD:
                a = value
            else:
                x = value
        elif cls == _ALU:
            op = insn.code & 0xF0
            if op == _AND:
                a &= insn.k
            elif op == _ADD:
                a = (a + insn.k) & 0xFFFFFFFF
            else:
                raise ValueError(f"ALU op {insn.code:#x} not interpreted")
        elif cls == _JMP:
            op = insn.code & 0xF0
            operand = x if insn.code & _X else insn.k
            taken = {_JEQ: a == operand, _JGT: a > operand, _JGE: a >= operand, _JSET: bool(a & operand)}[op]
            pc += insn.jt if taken else insn.jf
        elif cls == _RET:
            return min(insn.k, len(frame))
        else:
            raise ValueError(f"instruction {insn.code:#x} not interpreted")


class OverloadControl:
    """When to install the overload filter and what share of SYNs it keeps (sans-IO: the runtime
    calls :meth:`update` about every :attr:`interval` seconds with what the link counted).

    The signal is the packet socket's queue, as an active queue manager's (RED, CoDel): frames
    waiting beyond ``QUEUE_HIGH`` of the buffer mean the runtime is not keeping up, and every
    frame waits behind them (at 4 MB and a flood's small frames, tens of milliseconds); frames the
    kernel dropped for a full buffer mean the same, too late. Additive increase, multiplicative
    decrease, as TCP's congestion control: each such interval cuts the SYN share kept to
    ``DECREASE`` of itself when SYNs were most of what arrived; each calm interval raises it by
    ``INCREASE``. After ``CALM_INTERVALS`` calm intervals at a full share the base filter
    returns. The share never goes below ``MIN_KEEP``: some SYNs always reach the stack."""

    interval = 0.1
    DECREASE = 0.7
    INCREASE = 0.05
    MIN_KEEP = 1 / 256
    QUEUE_HIGH = 0.02
    CALM_INTERVALS = 10
    SYN_MAJORITY = 0.5

    def __init__(self) -> None:
        self.engaged = False
        self.syn_keep = 1.0
        self.frag_keep = 1.0
        self.calm = 0
        self.engagements = 0

    def update(self, kernel_drops: int, queue_fill: float, frames: int, syns: int, frags: int = 0) -> bool:
        """Feed one interval's counts: frames the kernel dropped, the receive queue's fill (0..1)
        now, frames, pure SYNs and IPv4 fragments the stack got. Returns whether the filter must
        be replaced. SYNs and fragments each have their own share, cut only while they are the
        majority of what arrives."""
        before = (self.engaged, self.syn_keep, self.frag_keep)
        if kernel_drops > 0 or queue_fill > self.QUEUE_HIGH:
            self.calm = 0
            if not self.engaged:
                self.engaged = True
                self.engagements += 1
            if frames and syns / frames >= self.SYN_MAJORITY:
                self.syn_keep = max(self.MIN_KEEP, self.syn_keep * self.DECREASE)
            if frames and frags / frames >= self.SYN_MAJORITY:
                self.frag_keep = max(self.MIN_KEEP, self.frag_keep * self.DECREASE)
        elif self.engaged:
            self.syn_keep = min(1.0, self.syn_keep + self.INCREASE)
            self.frag_keep = min(1.0, self.frag_keep + self.INCREASE)
            if self.syn_keep >= 1.0 and self.frag_keep >= 1.0:
                self.calm += 1
                if self.calm >= self.CALM_INTERVALS:
                    self.engaged = False
                    self.calm = 0
        return (self.engaged, self.syn_keep, self.frag_keep) != before
