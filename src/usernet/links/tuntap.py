"""Linux TAP (layer 2) and TUN (layer 3) devices through /dev/net/tun."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess

from usernet.links.base import Link

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_MAX_FRAME = 65535 + 14


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


def _set_up(name: str, mtu: int | None) -> None:
    """Bring the kernel side up (and set its MTU) with iproute2, as a user would by hand."""
    args = ["ip", "link", "set", "dev", name, "up"]
    if mtu is not None:
        args += ["mtu", str(mtu)]
    subprocess.run(args, check=False, capture_output=True, timeout=10)


class _TunTap(Link):
    def __init__(self, name: str, flags: int, mtu: int | None, bring_up: bool) -> None:
        self.fd, self.name = _open_tun_device(name, flags)
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

    def fileno(self) -> int:
        return self.fd

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        out = []
        read = os.read
        fd = self.fd
        for _ in range(max_frames):
            try:
                frame = read(fd, _MAX_FRAME)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno == errno.EIO:  # the interface is down: nothing to read
                    break
                raise
            out.append((frame, False))
        self.rx_frames += len(out)
        return out

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        try:
            os.write(self.fd, frame)
            self.tx_frames += 1
        except BlockingIOError:
            self.tx_dropped += 1  # the kernel queue is full: a real NIC drops too
        except OSError as err:
            if err.errno == errno.EIO:  # interface down
                self.tx_dropped += 1
                return
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Tap(_TunTap):
    """A TAP device (Ethernet frames); created if missing. The host gets its own random MAC,
    distinct from the kernel's MAC on the same device (they are two hosts on one wire)."""

    layer = 2

    def __init__(self, name: str, mtu: int | None = None, bring_up: bool = True) -> None:
        super().__init__(name, _IFF_TAP, mtu, bring_up)
        self.mac = bytes([0x02]) + os.urandom(5)


class Tun(_TunTap):
    """A TUN device (bare IPv4 packets, no Ethernet, no ARP); created if missing."""

    layer = 3
    mac = None

    def __init__(self, name: str, mtu: int | None = None, bring_up: bool = True) -> None:
        super().__init__(name, _IFF_TUN, mtu, bring_up)

    def recv_batch(self, max_frames: int = 64) -> list[tuple[bytes, bool]]:
        # Only IPv4 reaches the stack; the kernel also sends IPv6 router solicitations and the like.
        return [item for item in super().recv_batch(max_frames) if item[0][:1] and item[0][0] >> 4 == 4]
