"""A pcap writer (the classic libpcap format tcpdump, tshark and Wireshark read) for both directions."""

from __future__ import annotations

import struct
import threading
import time

from usernet.links.base import Link
from usernet.links.middleware import LinkWrapper

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # bare IPv4/IPv6, for TUN
SNAPLEN = 262144
_MAGIC_USEC = 0xA1B2C3D4


class PcapWriter(LinkWrapper):
    def __init__(self, inner: Link, path: str) -> None:
        super().__init__(inner)
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - lives as long as the link
        self._lock = threading.Lock()
        linktype = LINKTYPE_ETHERNET if inner.layer == 2 else LINKTYPE_RAW
        self._file.write(struct.pack("<IHHiIII", _MAGIC_USEC, 2, 4, 0, 0, SNAPLEN, linktype))
        self._file.flush()
        self.frames = 0

    def _record(self, frame: bytes | bytearray | memoryview) -> None:
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
        for frame, _ in frames:
            self._record(frame)
        return frames

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self._record(frame)
        self.inner.send(frame)

    def close(self) -> None:
        with self._lock:
            self._file.close()
        self.inner.close()
