"""IPv4 fragment reassembly (RFC 791 3.2, RFC 815), bounded in memory and time.

Overlapping fragments make the whole datagram suspect, so it is dropped (RFC 5722's rule for
IPv6, applied to IPv4 as Linux and the BSDs do for security); an exact duplicate of a fragment
already held (same offset, same length) is ignored, because links really do duplicate frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from usernet.wire import ipv4


@dataclass(slots=True)
class ReassemblyConfig:
    timeout: float = 30.0          # RFC 1122 3.3.2 recommends 60 to 120 s as an upper bound; Linux uses 30 s
    max_datagrams: int = 64        # datagrams in progress at once
    max_bytes: int = 1 << 20       # fragment payload held in total, across datagrams


class _Datagram:
    __slots__ = ("pieces", "total_length", "received", "deadline", "first_header")

    def __init__(self, deadline: float) -> None:
        self.pieces: dict[int, bytes] = {}   # offset -> payload
        self.total_length = -1               # known once the last fragment (MF=0) arrives
        self.received = 0
        self.deadline = deadline
        self.first_header: bytes | None = None  # header + 8 bytes of the offset-0 fragment, for ICMP


# key: (src, dst, proto, ident), RFC 791's reassembly identity
Key = tuple[int, int, int, int]


class Reassembler:
    def __init__(self, config: ReassemblyConfig | None = None) -> None:
        self.config = config or ReassemblyConfig()
        self.datagrams: dict[Key, _Datagram] = {}
        self.held_bytes = 0

    def add(self, header: ipv4.IPv4Header, raw_packet: memoryview, now: float,
            counters: dict[str, int]) -> bytes | None:
        """Take one fragment; return the whole payload once complete, else None."""
        key = (header.src, header.dst, header.proto, header.ident)
        offset = header.fragment_offset
        data = header.payload
        length = len(data)
        more = header.more_fragments
        end = offset + length
        if end + header.header_len > ipv4.MAX_PACKET or (more and (length == 0 or length & 7)):
            # RFC 791: every fragment but the last carries a multiple of 8 bytes.
            counters["ipv4.frag_invalid"] += 1
            return None
        dgram = self.datagrams.get(key)
        if dgram is None:
            if len(self.datagrams) >= self.config.max_datagrams:
                counters["ipv4.frag_table_full"] += 1
                return None
            dgram = self.datagrams[key] = _Datagram(now + self.config.timeout)
        if self.held_bytes + length > self.config.max_bytes:
            counters["ipv4.frag_memory_full"] += 1
            self._drop(key)
            return None
        if not more:
            if dgram.total_length not in (-1, end):
                counters["ipv4.frag_overlap"] += 1
                self._drop(key)
                return None
            dgram.total_length = end
        elif dgram.total_length != -1 and end > dgram.total_length:
            counters["ipv4.frag_overlap"] += 1
            self._drop(key)
            return None
        pieces = dgram.pieces
        existing = pieces.get(offset)
        if existing is not None and len(existing) == length:
            counters["ipv4.frag_duplicate"] += 1
            return None
        for other_offset, other in pieces.items():
            if other_offset < end and offset < other_offset + len(other):
                counters["ipv4.frag_overlap"] += 1
                self._drop(key)
                return None
        pieces[offset] = bytes(data)
        dgram.received += length
        self.held_bytes += length
        if offset == 0:
            dgram.first_header = bytes(raw_packet[:header.header_len + 8])
        if dgram.received != dgram.total_length:
            return None
        # Complete: no overlaps and the byte count matches, so the pieces tile [0, total) exactly.
        self._drop(key)
        counters["ipv4.reassembled"] += 1
        return b"".join(pieces[o] for o in sorted(pieces))

    def _drop(self, key: Key) -> None:
        dgram = self.datagrams.pop(key, None)
        if dgram is not None:
            self.held_bytes -= dgram.received

    def expire(self, now: float) -> list[bytes]:
        """Drop timed-out datagrams; return the quoted first fragments of those whose offset-0
        fragment arrived, for ICMP time exceeded (RFC 792; RFC 1122 3.3.2)."""
        quotes = []
        for key in [k for k, d in self.datagrams.items() if d.deadline <= now]:
            dgram = self.datagrams[key]
            if dgram.first_header is not None:
                quotes.append(dgram.first_header)
            self._drop(key)
        return quotes

    def next_deadline(self) -> float | None:
        if not self.datagrams:
            return None
        return min(d.deadline for d in self.datagrams.values())
