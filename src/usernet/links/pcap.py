"""A pcap writer (the classic libpcap format tcpdump, tshark and Wireshark read) for both directions.

``fix_checksums=True`` records frames whose checksums the medium was left to finish with those
checksums completed, so tshark and Wireshark do not flag them: received frames the link marks
checksum-trusted (CHECKSUM_PARTIAL from the kernel over veth, GRO super-frames), TSO
super-segments sent through ``send_gso``, and any frame whose TCP or UDP checksum field holds
exactly the folded pseudo-header sum (a partial checksum). The IPv4 header checksum and the
TCP/UDP checksum are recomputed on a copy: the frame the stack sees and the one the link sends are
never modified. Other frames are recorded as they are, so a capture still shows real corruption
(a bad checksum from the wire or from the fault injector).
"""

from __future__ import annotations

import struct
import threading
import time

from usernet.links.base import Link
from usernet.links.middleware import LinkWrapper
from usernet.wire import ethernet, ipv4
from usernet.wire.checksum import checksum, finish, pseudo_header_sum

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # bare IPv4/IPv6, for TUN
SNAPLEN = 262144
_MAGIC_USEC = 0xA1B2C3D4
_CSUM_AT = {ipv4.PROTO_TCP: 16, ipv4.PROTO_UDP: 6}  # where the checksum field sits in the L4 header
_L4_MIN = {ipv4.PROTO_TCP: 20, ipv4.PROTO_UDP: 8}


def complete_checksums(frame: bytes | bytearray | memoryview, layer: int = 2, force: bool = True) -> bytes:
    """A copy of *frame* with its IPv4 header checksum and TCP/UDP checksum computed.

    With *force* false only a TCP/UDP checksum holding a partial sum is completed (and the IPv4
    header checksum left alone). Frames that are not IPv4, fragments, and anything malformed come
    back unchanged (as bytes). Never raises for what a network can carry.
    """
    data = bytes(frame)
    try:
        return _complete(data, layer, force)
    except (ValueError, IndexError, struct.error):
        return data


def _complete(data: bytes, layer: int, force: bool) -> bytes:
    start = 0
    if layer == 2:
        if len(data) < ethernet.HEADER_LEN:
            return data
        (ethertype,) = struct.unpack_from("!H", data, 12)
        if ethertype != ethernet.ETHERTYPE_IPV4:
            return data
        start = ethernet.HEADER_LEN
    if len(data) < start + ipv4.HEADER_LEN or data[start] >> 4 != 4:
        return data
    ihl = (data[start] & 0x0F) * 4
    (total_length,) = struct.unpack_from("!H", data, start + 2)
    if ihl < ipv4.HEADER_LEN or total_length < ihl or start + total_length > len(data):
        return data
    out = bytearray(data)
    if force:
        out[start + 10:start + 12] = b"\0\0"
        struct.pack_into("!H", out, start + 10, checksum(out[start:start + ihl]))
    (flags_frag,) = struct.unpack_from("!H", data, start + 6)
    proto = data[start + 9]
    if flags_frag & (ipv4.FLAG_MF | ipv4.OFFSET_MASK) or proto not in _CSUM_AT:
        return bytes(out)  # a fragment's transport checksum covers the whole datagram: not ours to fix
    l4 = start + ihl
    l4_len = total_length - ihl
    if proto == ipv4.PROTO_UDP and l4_len >= 8:
        (udp_len,) = struct.unpack_from("!H", data, l4 + 4)
        if 8 <= udp_len <= l4_len:
            l4_len = udp_len
    if l4_len < _L4_MIN[proto]:
        return bytes(out)
    at = l4 + _CSUM_AT[proto]
    (field,) = struct.unpack_from("!H", data, at)
    src, dst = struct.unpack_from("!II", data, start + 12)
    pseudo = pseudo_header_sum(src, dst, proto, l4_len)
    if proto == ipv4.PROTO_UDP and field == 0:
        return bytes(out)  # RFC 768: no checksum was computed, and none is wrong
    if not force and field != 0xFFFF - finish(pseudo):
        return bytes(out)  # not a partial checksum: leave it as the wire had it
    out[at:at + 2] = b"\0\0"
    value = checksum(memoryview(out)[l4:l4 + l4_len], pseudo)
    if proto == ipv4.PROTO_UDP and value == 0:
        value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    struct.pack_into("!H", out, at, value)
    return bytes(out)


class PcapWriter(LinkWrapper):
    def __init__(self, inner: Link, path: str, fix_checksums: bool = False) -> None:
        super().__init__(inner)
        self.path = path
        self.fix_checksums = fix_checksums
        self._file = open(path, "wb")  # noqa: SIM115 - lives as long as the link
        self._lock = threading.Lock()
        linktype = LINKTYPE_ETHERNET if inner.layer == 2 else LINKTYPE_RAW
        self._file.write(struct.pack("<IHHiIII", _MAGIC_USEC, 2, 4, 0, 0, SNAPLEN, linktype))
        self._file.flush()
        self.frames = 0

    def _record(self, frame: bytes | bytearray | memoryview, offloaded: bool = False) -> None:
        if self.fix_checksums:
            frame = complete_checksums(frame, self.layer, force=offloaded)
        stamp = time.time()
        seconds = int(stamp)
        micros = int((stamp - seconds) * 1e6)
        length = len(frame)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(struct.pack("<IIII", seconds, micros, min(length, SNAPLEN), length))
            self._file.write(frame[:SNAPLEN])
            self._file.flush()  # so a reader can follow the capture while we run
            self.frames += 1

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames = self.inner.recv_batch(max_frames)
        for frame, trusted in frames:
            self._record(frame, trusted)
        return frames

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self._record(frame)
        self.inner.send(frame)

    def send_gso(self, frame: bytes | bytearray, mss: int) -> None:
        """A TSO super-segment (only reached if a runtime hands one to this wrapper: wrappers do not
        advertise ``gso_max``): recorded whole, as tcpdump on the interface would see it."""
        self._record(frame, True)
        self.inner.send_gso(frame, mss)  # type: ignore[attr-defined]

    def close(self) -> None:
        with self._lock:
            self._file.close()
        self.inner.close()
