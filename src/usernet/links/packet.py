"""AF_PACKET on an existing interface (a veth end, a real NIC).

With the kernel's offloads on (the default on veth), frames handed to a packet socket can be
TCP super-frames bigger than the MTU whose checksum is only partial (CHECKSUM_PARTIAL: the
sender's kernel never computed it, since it never leaves the machine). PACKET_VNET_HDR prefixes
each frame with a virtio_net_hdr saying so; such frames are passed up as checksum-trusted.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
import struct
from collections.abc import Sequence

from usernet.links import bpf
from usernet.links.base import Link

log = logging.getLogger("usernet.link")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_STATISTICS = 6
SO_MEMINFO = 55  # Linux 4.6: sk_meminfo, rmem_alloc first, then rcvbuf
PACKET_IGNORE_OUTGOING = 23
VNET_HDR_LEN = 10
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_TCPV4 = 1
_ZERO_VNET = bytes(VNET_HDR_LEN)
_VNET = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (host order)
GSO_MAX_PAYLOAD = 65535 - 20 - 60 - 1000  # one IPv4 datagram, with room for headers and options
_MAX_FRAME = 65536 + 14 + VNET_HDR_LEN


_SIOCGIFMTU = 0x8921
_SIOCGIFHWADDR = 0x8927


def _interface_info(sock: socket.socket, ifname: str) -> tuple[bytes, int]:
    """(MAC, MTU) of *ifname* by ioctl on our own socket: right in whatever network namespace the
    socket was made, unlike /sys/class/net (which follows the mount, not setns)."""
    name = ifname.encode()
    if not name or len(name) > 15:
        raise OSError(errno.ENODEV, f"no such interface: {ifname}")
    request = struct.pack("16s16s", name, b"")
    try:
        hwaddr = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, request)
        mtu_reply = fcntl.ioctl(sock.fileno(), _SIOCGIFMTU, request)
    except OSError as err:
        if err.errno in (errno.ENODEV, errno.ENXIO):
            raise OSError(errno.ENODEV, f"no such interface: {ifname}") from None
        raise
    mac = hwaddr[18:24]  # ifr_hwaddr: sa_family (2 bytes), then the address
    (mtu,) = struct.unpack_from("i", mtu_reply, 16)
    return mac, mtu


class Packet(Link):
    """A raw packet socket bound to *ifname*; the host uses the interface's own MAC."""

    layer = 2

    def __init__(self, ifname: str, promisc: bool = False, rcvbuf: int = 4 << 20) -> None:
        self.name = ifname
        self.promisc = promisc
        self._filter_mac: bytes | None = None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise PermissionError(errno.EPERM, "AF_PACKET needs root or CAP_NET_RAW") from None
        try:
            self.mac, self.mtu = _interface_info(sock, ifname)
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            try:
                # Our own transmissions would otherwise loop back into recv (Linux 4.20+).
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._filter_outgoing = False
            except OSError:
                self._filter_outgoing = True
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
            sock.bind((ifname, ETH_P_ALL))
            if promisc:
                index = socket.if_nametoindex(ifname)
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                                struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self.gso_max = GSO_MAX_PAYLOAD  # TCP segmentation offload through the vnet header
        self.rx_frames = self.tx_frames = self.tx_dropped = self.rx_partial_csum = 0
        # One receive buffer, reused: a super-frame and its vnet header fit (bounded: _MAX_FRAME).
        self._rx_buf = bytearray(_MAX_FRAME)
        self._rx_view = memoryview(self._rx_buf)

    def fileno(self) -> int:
        return self.sock.fileno()

    # Kernel-side filtering (usernet.links.bpf): the runtime installs the base filter for the MAC
    # the stack uses (which --mac may have changed) and swaps in the overload one under floods.

    def install_filter(self, mac: bytes) -> None:
        self._filter_mac = mac
        bpf.attach(self.sock, bpf.frame_filter(mac, promisc=self.promisc))

    def set_overload(self, engaged: bool, syn_keep: float, admitted: Sequence[int] = (),
                     frag_keep: float = 1.0) -> None:
        if self._filter_mac is None:
            return
        bpf.attach(self.sock, bpf.frame_filter(self._filter_mac, promisc=self.promisc, overload=engaged,
                                               syn_keep=syn_keep if engaged else 1.0, admitted=admitted,
                                               frag_keep=frag_keep if engaged else 1.0))

    def kernel_drops(self) -> int:
        """Frames the kernel dropped for lack of room in our receive buffer since the last call
        (PACKET_STATISTICS resets on every read)."""
        try:
            _, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return 0
        return int(drops)

    def queue_fill(self) -> float:
        """How full the receive buffer is now (0..1): SO_MEMINFO's allocated over its limit."""
        try:
            allocated, limit = struct.unpack_from("II", self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))
        except OSError:
            return 0.0
        return allocated / limit if limit else 0.0

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        # Each frame is read into one preallocated buffer (no 64 KB allocation per recv) and
        # copied out once, vnet header left behind, as its own bytes: consumers (the tracer, pcap,
        # the control socket's taps, the fault injector's queues) may keep it past this batch.
        out = []
        buf = self._rx_buf
        view = self._rx_view
        sock = self.sock
        recv_into = sock.recv_into
        filter_outgoing = self._filter_outgoing
        for _ in range(max_frames):
            try:
                if filter_outgoing:
                    n, address = sock.recvfrom_into(buf)
                    if address[2] == socket.PACKET_OUTGOING:
                        continue
                else:
                    n = recv_into(buf)
            except BlockingIOError:
                break
            if n <= VNET_HDR_LEN:
                continue
            flags = buf[0]
            if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                self.rx_partial_csum += 1
            out.append((bytes(view[VNET_HDR_LEN:n]),
                        bool(flags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))))
        self.rx_frames += len(out)
        return out

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        try:
            self.sock.sendmsg((_ZERO_VNET, frame))
            self.tx_frames += 1
        except BlockingIOError:
            self.tx_dropped += 1
        except OSError as err:
            if err.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENOBUFS):
                self.tx_dropped += 1
                return
            raise

    def send_gso(self, frame: bytes | bytearray, mss: int) -> None:
        """Send a TCP super-segment: the kernel cuts it into *mss*-sized segments and completes
        their checksums (the TCP checksum field holds the pseudo-header sum: CHECKSUM_PARTIAL)."""
        ip_start = 14
        ihl = (frame[ip_start] & 0x0F) * 4
        tcp_start = ip_start + ihl
        header_len = tcp_start + (frame[tcp_start + 12] >> 4) * 4
        vnet = _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, header_len, mss, tcp_start, 16)
        try:
            self.sock.sendmsg((vnet, frame))
            self.tx_frames += 1
        except BlockingIOError:
            self.tx_dropped += 1

    def close(self) -> None:
        self.sock.close()
