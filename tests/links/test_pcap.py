"""PcapWriter(fix_checksums=True): partial (offloaded) checksums are completed in the capture only."""

from __future__ import annotations

import shutil
import struct
import subprocess

from tests.realpeer.support import need_programs
from usernet.links import PcapWriter, Switch
from usernet.links.base import Link
from usernet.links.pcap import complete_checksums
from usernet.wire import ethernet, ipv4, tcp, udp
from usernet.wire.checksum import checksum, pseudo_header_sum

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A = ipv4.addr("10.0.0.1")
B = ipv4.addr("10.0.0.2")
TCP_CSUM = 14 + 20 + 16
UDP_CSUM = 14 + 20 + 6


def tcp_frame(payload: bytes = b"partial, as the kernel leaves it", partial: bool = True) -> bytes:
    segment = tcp.build(A, B, 40000, 80, 1000, 2000, tcp.ACK | tcp.PSH, 502, payload=payload,
                        partial_checksum=partial)
    return ethernet.build(MAC_B, MAC_A, 0x0800, ipv4.build(src=A, dst=B, proto=6, payload=segment, ident=3))


def udp_frame(partial: bool) -> bytes:
    dgram = bytearray(udp.build(A, B, 5000, 53, b"query"))
    if partial:
        folded = 0xFFFF - checksum(b"", pseudo_header_sum(A, B, 17, len(dgram)))
        dgram[6:8] = folded.to_bytes(2, "big")
    return ethernet.build(MAC_B, MAC_A, 0x0800, ipv4.build(src=A, dst=B, proto=17, payload=dgram, ident=4))


def read_pcap(path) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    frames, at = [], 24
    while at < len(data):
        _, _, caplen, _ = struct.unpack_from("<IIII", data, at)
        frames.append(data[at + 16:at + 16 + caplen])
        at += 16 + caplen
    return frames


def l4_ok(frame: bytes) -> bool:
    """The project's own check: the sum over pseudo-header and segment is all ones."""
    header = ipv4.parse(frame, 14)
    return checksum(header.payload, pseudo_header_sum(header.src, header.dst, header.proto,
                                                      len(header.payload))) == 0


def scapy_ok(frame: bytes, layer: str) -> bool:
    """scapy as an independent reference: its recomputed checksum equals the recorded one."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    cls = {"IP": IP, "TCP": TCP, "UDP": UDP}[layer]
    packet = Ether(frame)
    recorded = packet[cls].chksum
    del packet[cls].chksum
    return Ether(bytes(packet))[cls].chksum == recorded


class OffloadLink(Link):
    """Frames come in marked checksum-trusted (CHECKSUM_PARTIAL over veth); TSO goes out through send_gso."""

    def __init__(self, trusted: bool = True) -> None:
        self.queue: list[bytes] = []
        self.trusted = trusted
        self.sent: list[bytes] = []
        self.gso: list[tuple[bytes, int]] = []

    def fileno(self) -> int:
        return -1

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        frames, self.queue = self.queue, []
        return [(frame, self.trusted) for frame in frames]

    def send(self, frame) -> None:
        self.sent.append(bytes(frame))

    def send_gso(self, frame, mss: int) -> None:
        self.gso.append((bytes(frame), mss))


def test_partial_tcp_checksum_is_completed_in_the_capture_only(tmp_path) -> None:
    frame = bytearray(tcp_frame())
    before = bytes(frame)
    assert not l4_ok(before)
    link = OffloadLink()
    writer = PcapWriter(link, str(tmp_path / "fixed.pcap"), fix_checksums=True)
    writer.send(frame)  # a plain send whose field holds just the pseudo-header sum
    link.queue.append(before)
    received = writer.recv_batch()  # a trusted frame from the kernel
    writer.close()
    assert bytes(frame) == before and link.sent == [before]  # the stack's and the link's frames untouched
    assert received == [(before, True)]
    recorded = read_pcap(tmp_path / "fixed.pcap")
    assert len(recorded) == 2
    for captured in recorded:
        assert l4_ok(captured) and scapy_ok(captured, "TCP") and scapy_ok(captured, "IP")
        assert captured[:TCP_CSUM] == before[:TCP_CSUM] and captured[TCP_CSUM + 2:] == before[TCP_CSUM + 2:]


def test_without_fix_the_capture_holds_the_frame_as_it_was(tmp_path) -> None:
    frame = tcp_frame()
    link = OffloadLink()
    writer = PcapWriter(link, str(tmp_path / "raw.pcap"))
    writer.send(frame)
    writer.close()
    assert read_pcap(tmp_path / "raw.pcap") == [frame]


def test_real_corruption_stays_visible(tmp_path) -> None:
    """An untrusted frame with a wrong (not partial) checksum is recorded as it is."""
    corrupt = bytearray(tcp_frame(partial=False))
    corrupt[TCP_CSUM] ^= 0x40
    link = OffloadLink(trusted=False)
    link.queue.append(bytes(corrupt))
    writer = PcapWriter(link, str(tmp_path / "c.pcap"), fix_checksums=True)
    writer.recv_batch()
    writer.close()
    assert read_pcap(tmp_path / "c.pcap") == [bytes(corrupt)]


def test_trusted_frames_get_every_checksum_completed(tmp_path) -> None:
    """GRO super-frames and CHECKSUM_PARTIAL frames: whatever the field holds, the capture verifies."""
    odd = bytearray(tcp_frame(partial=False))
    odd[TCP_CSUM:TCP_CSUM + 2] = b"\x00\x00"
    odd[14 + 10:14 + 12] = b"\x00\x00"  # and an IP header checksum left to the NIC
    link = OffloadLink(trusted=True)
    link.queue += [bytes(odd), udp_frame(partial=True), tcp_frame(partial=False)]
    writer = PcapWriter(link, str(tmp_path / "t.pcap"), fix_checksums=True)
    writer.recv_batch()
    writer.close()
    first, second, third = read_pcap(tmp_path / "t.pcap")
    assert scapy_ok(first, "IP") and scapy_ok(first, "TCP")
    assert scapy_ok(second, "UDP") and l4_ok(second)
    assert third == tcp_frame(partial=False)  # already right: unchanged


def test_partial_udp_fixed_and_zero_udp_checksum_kept(tmp_path) -> None:
    no_checksum = bytearray(udp_frame(partial=False))
    no_checksum[UDP_CSUM:UDP_CSUM + 2] = b"\x00\x00"  # RFC 768: none computed, nothing to fix
    link = OffloadLink()
    writer = PcapWriter(link, str(tmp_path / "u.pcap"), fix_checksums=True)
    writer.send(udp_frame(partial=True))
    writer.send(bytes(no_checksum))
    writer.close()
    fixed, zero = read_pcap(tmp_path / "u.pcap")
    assert scapy_ok(fixed, "UDP")
    assert zero == bytes(no_checksum)


def test_tso_super_segment_recorded_whole_and_fixed(tmp_path) -> None:
    big = tcp_frame(payload=bytes(range(256)) * 40)  # 10,240 bytes: a super-segment
    link = OffloadLink()
    writer = PcapWriter(link, str(tmp_path / "tso.pcap"), fix_checksums=True)
    writer.send_gso(big, 1448)
    writer.close()
    assert link.gso == [(big, 1448)]
    (captured,) = read_pcap(tmp_path / "tso.pcap")
    assert len(captured) == len(big) and l4_ok(captured) and scapy_ok(captured, "TCP")


def test_frames_that_are_not_ipv4_or_are_malformed_pass_unchanged() -> None:
    fragment = bytearray(tcp_frame())
    fragment[14 + 6] = 0x20  # MF: the transport checksum covers the whole datagram
    fragment[14 + 10:14 + 12] = b"\0\0"
    fragment[14 + 10:14 + 12] = checksum(fragment[14:34]).to_bytes(2, "big")
    cases = [b"", b"\x01" * 10, ethernet.build(MAC_B, MAC_A, 0x88B5, b"x" * 46), tcp_frame()[:30],
             tcp_frame()[:14] + b"\x45\x00\xff\xff" + tcp_frame()[18:], bytes(fragment)]
    for frame in cases:
        assert complete_checksums(frame, force=True) == frame
    assert complete_checksums(tcp_frame()[14:], layer=3, force=False) != tcp_frame()[14:]  # TUN: bare IPv4


def test_tshark_verifies_the_fixed_capture(tmp_path) -> None:
    if shutil.which("tshark") is None:
        need_programs("tshark")  # skips (fails under CI=true) only when tshark is missing
    paths = {}
    for fix in (False, True):
        path = str(tmp_path / f"fix-{fix}.pcap")
        writer = PcapWriter(Switch().port(), path, fix_checksums=fix)
        writer.send(tcp_frame())
        writer.close()
        paths[fix] = path

    def status(path: str) -> str:
        result = subprocess.run(["tshark", "-n", "-r", path, "-o", "tcp.check_checksum:TRUE", "-T", "fields",
                                 "-e", "tcp.checksum.status"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert status(paths[False]) == "0"  # tshark: 0 bad, 1 good, 2 unverified
    assert status(paths[True]) == "1"
