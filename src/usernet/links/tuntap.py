"""Linux TAP (layer 2) and TUN (layer 3) devices through /dev/net/tun.

With ``offload=True`` (the default) the device is opened with IFF_VNET_HDR and TUNSETOFFLOAD
(TUN_F_CSUM | TUN_F_TSO4), as a virtio NIC backend would: the kernel then hands us TCP
super-frames up to 64 KB whose checksum is only partial (CHECKSUM_PARTIAL: it never left the
machine) and takes super-segments from us that it cuts at the MSS itself, exactly as
``links.packet.Packet`` does with PACKET_VNET_HDR. Each read and write carries a 10-byte
virtio_net_hdr in front of the frame.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import subprocess
import sys

from usernet.links.base import Link
from usernet.links.packet import (
    _VNET,
    GSO_MAX_PAYLOAD,
    VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VNET_HDR_LEN,
)

log = logging.getLogger("usernet.link")

_TUNSETIFF = 0x400454CA
_TUNSETOFFLOAD = 0x400454D0    # _IOW('T', 208, unsigned int)
_TUNSETVNETHDRSZ = 0x400454D8  # _IOW('T', 216, int)
_TUNSETVNETLE = 0x400454DC     # _IOW('T', 220, int)
_IFF_TUN = 0x0001
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_IFF_VNET_HDR = 0x4000
_TUN_F_CSUM = 0x01
_TUN_F_TSO4 = 0x02
_MAX_FRAME = 65535 + 14
# A super-frame: one 64 KB IPv4 datagram, its Ethernet header and the vnet header in front.
_MAX_VNET_READ = 65536 + 14 + VNET_HDR_LEN
_ZERO_VNET = bytes(VNET_HDR_LEN)
_OFFLOAD_FLAGS = _TUN_F_CSUM | _TUN_F_TSO4


def device_kind(name: str) -> str | None:
    """What the interface *name* is: None (no such interface), "tun", "tap" or "other" (veth, NIC...).

    Reads /sys, which follows the network namespace of `ip netns exec`, not of setns() alone."""
    base = f"/sys/class/net/{name}" if name and "/" not in name and name not in (".", "..") else None
    if base is None or not os.path.isdir(base):
        return None
    try:
        with open(f"{base}/tun_flags") as f:
            flags = int(f.read().strip(), 16)
    except (OSError, ValueError):
        return "other"
    return "tap" if flags & _IFF_TAP else "tun" if flags & _IFF_TUN else "other"


def _open_tun_device(name: str, flags: int) -> tuple[int, str]:
    if len(name.encode()) > 15:
        raise OSError(errno.EINVAL, f"interface name {name!r} is longer than 15 bytes")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OSError(errno.ENODEV, "/dev/net/tun is missing (is the tun module loaded?)") from None
    try:
        ifr = struct.pack("16sH22x", name.encode(), flags | _IFF_NO_PI)
        result = fcntl.ioctl(fd, _TUNSETIFF, ifr)
    except OSError as err:
        os.close(fd)
        hint = " (needs root or CAP_NET_ADMIN)" if err.errno in (errno.EPERM, errno.EACCES) else ""
        want = "tap" if flags & _IFF_TAP else "tun"
        kind = device_kind(name) if err.errno == errno.EINVAL else None
        if kind is not None and kind != want:
            # The kernel's EINVAL for "that name is taken by another kind of device".
            hint = f" ({name} exists and is {'not TUN/TAP' if kind == 'other' else 'a ' + kind.upper() + ' device'})"
        raise OSError(err.errno, f"cannot attach to {name} as {want.upper()}: {err.strerror}{hint}") from None
    real_name = result[:16].rstrip(b"\0").decode()
    return fd, real_name


def _enable_offload(fd: int) -> None:
    """Set up the vnet header and the offloads on a descriptor opened with IFF_VNET_HDR.

    10 bytes is the basic virtio_net_hdr (the kernel's default, set anyway so nothing else's
    choice leaks in). The 12-byte form adds num_buffers, which only means something to a virtio
    guest merging receive buffers; we read each frame whole in one read, and 10 is also the
    fixed size PACKET_VNET_HDR uses, so both links share one header codec."""
    fcntl.ioctl(fd, _TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
    try:
        # The header's fields are in the device's byte order: pin it to little-endian, the order
        # our codec (_VNET) uses. Native on little-endian machines, so only a big-endian one needs it.
        fcntl.ioctl(fd, _TUNSETVNETLE, struct.pack("i", 1))
    except OSError:
        if sys.byteorder != "little":
            raise
    # What the device may hand us: partial checksums, and TCPv4 super-frames (which need them).
    fcntl.ioctl(fd, _TUNSETOFFLOAD, _OFFLOAD_FLAGS)


def _set_up(name: str, mtu: int | None) -> None:
    """Bring the kernel side up (and set its MTU) with iproute2, as a user would by hand."""
    args = ["ip", "link", "set", "dev", name, "up"]
    if mtu is not None:
        args += ["mtu", str(mtu)]
    subprocess.run(args, check=False, capture_output=True, timeout=10)


class _TunTap(Link):
    #: TCP payload bytes per super-segment we hand the kernel (0: none; see `Host`)
    gso_max = 0

    def __init__(self, name: str, flags: int, mtu: int | None, bring_up: bool, offload: bool) -> None:
        #: whether frames carry a virtio_net_hdr (offloads negotiated with the kernel)
        self.offload = False
        self.fd, self.name = self._open(name, flags, offload)
        if bring_up:
            _set_up(self.name, mtu)
        try:
            with open(f"/sys/class/net/{self.name}/mtu") as f:
                #: what the kernel reports after set-up: less than *mtu* when it refused that one
                self.device_mtu = int(f.read())
        except (OSError, ValueError):
            self.device_mtu = mtu or 1500
        self.mtu = mtu or self.device_mtu
        self.rx_frames = self.tx_frames = self.tx_dropped = 0
        #: frames received with a partial checksum / as TCP super-frames; super-segments sent
        self.rx_partial_csum = self.rx_gso = self.tx_gso = 0
        # One receive buffer, reused (bounded: one super-frame with its vnet header, or one frame).
        self._rx_view = memoryview(bytearray(_MAX_VNET_READ if self.offload else _MAX_FRAME))
        self._rx_bufs = [self._rx_view]

    def _open(self, name: str, flags: int, offload: bool) -> tuple[int, str]:
        if offload:
            try:
                fd, real_name = _open_tun_device(name, flags | _IFF_VNET_HDR)
            except OSError as err:
                if err.errno != errno.EINVAL:
                    raise
                log.debug("%s: IFF_VNET_HDR refused (%s); no offloads", name, err)
            else:
                try:
                    _enable_offload(fd)
                except OSError as err:
                    # The header is fixed at TUNSETIFF time: start over on a plain descriptor.
                    log.debug("%s: offload set-up failed (%s); no offloads", real_name, err)
                    os.close(fd)
                else:
                    self.offload = True
                    return fd, real_name
        fd, real_name = _open_tun_device(name, flags)
        self._reset_offload(fd)
        return fd, real_name

    @staticmethod
    def _reset_offload(fd: int) -> None:
        """Offloads belong to the device, not the descriptor, and outlive us on a persistent one:
        clear them, so a plain reader is never handed super-frames it cannot parse."""
        try:
            fcntl.ioctl(fd, _TUNSETOFFLOAD, 0)
        except OSError as err:
            log.debug("clearing offloads failed: %s", err)

    def fileno(self) -> int:
        return self.fd

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        # Each read goes into one preallocated buffer (no 64 KB allocation per read) and the frame
        # is copied out once, as its own bytes (consumers may keep it past this batch).
        out = []
        readv = os.readv
        fd = self.fd
        offload = self.offload
        bufs = self._rx_bufs
        buf = bufs[0]
        view = self._rx_view
        for _ in range(max_frames):
            try:
                n = readv(fd, bufs)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno == errno.EIO:  # the interface is down: nothing to read
                    break
                raise
            if not offload:
                out.append((bytes(view[:n]), False))
                continue
            if n <= VNET_HDR_LEN:
                continue
            vflags = buf[0]
            if vflags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                self.rx_partial_csum += 1
            if buf[1]:
                self.rx_gso += 1
            # Partial (never computed: it stayed inside this machine) or already verified by the
            # kernel: either way the stack need not check the L4 checksum.
            out.append((bytes(view[VNET_HDR_LEN:n]),
                        bool(vflags & (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID))))
        self.rx_frames += len(out)
        return out

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        try:
            if self.offload:
                os.writev(self.fd, (_ZERO_VNET, frame))
            else:
                os.write(self.fd, frame)
            self.tx_frames += 1
        except BlockingIOError:
            self.tx_dropped += 1  # the kernel queue is full: a real NIC drops too
        except OSError as err:
            if err.errno == errno.EIO:  # interface down
                self.tx_dropped += 1
                return
            raise

    def send_gso(self, frame: bytes | bytearray, mss: int) -> None:
        """Send a TCP super-segment (only offered while `gso_max` is set): the kernel cuts it into
        *mss*-sized segments and completes their checksums, whose field holds the pseudo-header sum."""
        ip_start = 14 if self.layer == 2 else 0
        tcp_start = ip_start + (frame[ip_start] & 0x0F) * 4
        header_len = tcp_start + (frame[tcp_start + 12] >> 4) * 4
        vnet = _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, header_len, mss, tcp_start, 16)
        try:
            os.writev(self.fd, (vnet, frame))
            self.tx_frames += 1
            self.tx_gso += 1
        except BlockingIOError:
            self.tx_dropped += 1
        except OSError as err:
            if err.errno == errno.EIO:
                self.tx_dropped += 1
                return
            raise

    def close(self) -> None:
        if self.fd >= 0:
            if self.offload:
                self._reset_offload(self.fd)
            os.close(self.fd)
            self.fd = -1


class Tap(_TunTap):
    """A TAP device (Ethernet frames); created if missing. The host gets its own random MAC,
    distinct from the kernel's MAC on the same device (they are two hosts on one wire).

    ``offload=False`` reads and writes plain frames, each at most the MTU and fully checksummed."""

    layer = 2

    def __init__(self, name: str, mtu: int | None = None, bring_up: bool = True, offload: bool = True) -> None:
        super().__init__(name, _IFF_TAP, mtu, bring_up, offload)
        self.mac = bytes([0x02]) + os.urandom(5)
        if self.offload:
            self.gso_max = GSO_MAX_PAYLOAD  # the stack then emits TCP super-segments (send_gso)


class Tun(_TunTap):
    """A TUN device (bare IPv4 packets, no Ethernet, no ARP); created if missing.

    With offloads the kernel hands us TCP super-packets with partial checksums, as on TAP; we send
    MSS-sized segments, since the stack offers segmentation only on Ethernet interfaces."""

    layer = 3
    mac = None

    def __init__(self, name: str, mtu: int | None = None, bring_up: bool = True, offload: bool = True) -> None:
        super().__init__(name, _IFF_TUN, mtu, bring_up, offload)

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        # Only IPv4 reaches the stack; the kernel also sends IPv6 router solicitations and the like.
        return [item for item in super().recv_batch(max_frames) if item[0][:1] and item[0][0] >> 4 == 4]
