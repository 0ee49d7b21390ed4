"""ipv4.addr without the ipaddress module, and checksum.le_mod: same answers as the references."""

from __future__ import annotations

import ipaddress
import random

import pytest

from usernet.wire import ipv4
from usernet.wire.checksum import checksum, le_mod


@pytest.mark.parametrize("text", [
    "10.0.0.2", "0.0.0.0", "255.255.255.255", "192.168.1.10", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.00",
    "1.2.3.256", "1.2.3.999", "1.2.3.1000", " 1.2.3.4", "1.2.3.4 ", "1.2.3.+4", "1.2.3.-4", "1.2.3.\u0664",
    "1..3.4", "", "...", "1.2.3.4\n", "1_0.2.3.4", "0x1.2.3.4", "1.2.3.0",
])
def test_addr_agrees_with_ipaddress(text: str) -> None:
    try:
        expected: int | None = int(ipaddress.IPv4Address(text))
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            ipv4.addr(text)
    else:
        assert ipv4.addr(text) == expected


def test_addr_round_trips() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        value = rng.getrandbits(32)
        assert ipv4.addr(ipv4.ntoa(value)) == value


def _reference_sum(data: bytes) -> int:
    padded = data + b"\0" * (len(data) & 1)
    return sum(int.from_bytes(padded[i:i + 2], "little") for i in range(0, len(padded), 2))


@pytest.mark.parametrize("size", [0, 1, 2, 191, 192, 193, 194, 1000, 1479, 1480, 2046, 2047, 2048, 2049, 4097, 9001])
def test_le_mod_and_checksum(size: int) -> None:
    rng = random.Random(size)
    for data in (rng.randbytes(size), b"\xff" * size, bytes(size)):
        assert le_mod(data) == _reference_sum(data) % 0xFFFF
        assert le_mod(memoryview(bytearray(data))) == le_mod(data)
        total = (_reference_sum(data) << 8) + 0x1234  # an extra (network-order) sum, as a pseudo-header
        folded = total % 0xFFFF
        assert checksum(data, 0x1234) == (0xFFFF - folded if folded else 0)
