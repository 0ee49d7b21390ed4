"""The Internet checksum (RFC 1071) against known answers and a naive word-by-word reference."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.support import addresses, reference_checksum
from usernet.wire.checksum import _CHUNK, checksum, finish, ones_sum, pseudo_header_sum, update16


def test_rfc1071_numerical_example() -> None:
    # RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum (ones' complement) to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert checksum(data) == 0x220D
    assert checksum(data + b"\x22\x0d") == 0


def test_classic_ipv4_header_vector() -> None:
    # The textbook header 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
    header = bytes.fromhex("45000073000040004011" "0000" "c0a80001c0a800c7")
    assert checksum(header) == 0xB861
    assert checksum(header[:10] + b"\xb8\x61" + header[12:]) == 0


@pytest.mark.parametrize("data, expected", [
    (b"", 0xFFFF),                   # empty: sum +0, complement all ones
    (b"\0", 0xFFFF),
    (b"\0" * 4, 0xFFFF),
    (b"\0" * 65535, 0xFFFF),
    (b"\xff\xff", 0x0000),           # sum is -0 (0xFFFF): complement 0, never confused with +0
    (b"\xff\xff" * 1000, 0x0000),
    (b"\x00\x01\xff\xfe", 0x0000),   # 0x0001 + 0xFFFE = 0xFFFF
    (b"\xff\xff\x00\x01", 0xFFFE),   # end-around carry: 0xFFFF + 1 = 0x10000 -> 0x0001
    (b"\x01", 0xFEFF),               # odd byte is the high half of a zero-padded word
    (b"\x00\x00\x01", 0xFEFF),
    (b"\xff", 0x00FF),
    (b"\x80\x00\x80\x00", 0xFFFE),   # carry out of the top bit folds back in
])
def test_edge_cases(data: bytes, expected: int) -> None:
    assert checksum(data) == expected == reference_checksum(data)


@pytest.mark.parametrize("size", [1, 2, 3, 1499, 1500, 1501, _CHUNK - 1, _CHUNK, _CHUNK + 1, _CHUNK + 2,
                                  2 * _CHUNK + 1, 65534, 65535, 65536, 200_001])
@pytest.mark.parametrize("fill", ["ones", "pattern"])
def test_large_and_chunk_boundary_buffers(size: int, fill: str) -> None:
    data = b"\xff" * size if fill == "ones" else bytes(i * 7 & 0xFF for i in range(size))
    assert checksum(data) == reference_checksum(data)
    assert checksum(memoryview(data)) == checksum(bytearray(data)) == checksum(data)


def test_views_at_odd_offsets() -> None:
    base = bytes(range(256)) * 80
    view = memoryview(base)
    for start, end in [(1, 10), (3, 1504), (7, 8200), (1, 20_001)]:
        assert checksum(view[start:end]) == reference_checksum(base[start:end])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_matches_reference(data: bytes) -> None:
    assert checksum(data) == reference_checksum(data)


@settings(max_examples=30, deadline=None)
@given(st.integers(_CHUNK - 4, 3 * _CHUNK + 5), st.integers(0, 2**32 - 1), st.booleans())
def test_matches_reference_across_chunks(size: int, seed: int, sparse: bool) -> None:
    data = random.Random(seed).randbytes(size)
    if sparse:  # mostly zeros and ones, where carries and -0 show up
        data = bytes(b if b < 16 else (0 if b < 136 else 255) for b in data)
    assert checksum(data) == reference_checksum(data)


@given(st.binary(max_size=600))
def test_inserted_checksum_verifies_to_zero(data: bytes) -> None:
    if len(data) % 2:
        data += b"\0"
    field = checksum(data).to_bytes(2, "big")
    assert checksum(data + field) == 0
    assert checksum(field + data) == 0  # position of the field does not matter (commutative)


@given(st.lists(st.binary(max_size=50).map(lambda b: b + b"\0" * (len(b) % 2)), max_size=6), st.binary(max_size=9))
def test_ones_sum_pieces_add_up(pieces: list[bytes], last: bytes) -> None:
    # RFC 1071 2(B)/(C): the sum is associative and commutative over even-length pieces.
    whole = b"".join(pieces) + last
    assert 0 <= ones_sum(whole) <= 0xFFFF
    assert finish(sum(ones_sum(p) for p in pieces) + ones_sum(last)) == checksum(whole) == reference_checksum(whole)
    assert (ones_sum(whole) == 0) == (not any(whole))  # +0 only for all-zero data


def test_finish_zero_cases() -> None:
    assert finish(0) == 0xFFFF
    assert finish(0xFFFF) == 0 and finish(2 * 0xFFFF) == 0
    assert finish(1) == 0xFFFE


@given(addresses, addresses, st.integers(0, 255), st.binary(max_size=100))
def test_pseudo_header_sum_matches_explicit_header(src: int, dst: int, proto: int, data: bytes) -> None:
    # RFC 768 / RFC 9293 3.1: source, destination, zero, protocol, length.
    explicit = struct.pack("!IIBBH", src, dst, 0, proto, len(data))
    expected = reference_checksum(explicit + data + b"\0" * (len(data) % 2))
    assert checksum(data, pseudo_header_sum(src, dst, proto, len(data))) == expected
    assert finish(ones_sum(data) + pseudo_header_sum(src, dst, proto, len(data))) == expected


def test_pseudo_header_of_zeroes() -> None:
    assert checksum(b"", pseudo_header_sum(0, 0, 0, 0)) == 0xFFFF == reference_checksum(bytes(12))


@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0), st.data())
def test_update16_matches_recomputing(data: bytes, draw: st.DataObject) -> None:
    index = draw.draw(st.integers(0, len(data) // 2 - 1)) * 2
    new_word = draw.draw(st.integers(0, 0xFFFF))
    changed = data[:index] + new_word.to_bytes(2, "big") + data[index + 2:]
    old_word = int.from_bytes(data[index:index + 2], "big")
    updated = update16(checksum(data), old_word, new_word)
    if any(changed):
        assert updated == checksum(changed)
    else:  # the documented corner: all-zero data gives -0 (0x0000) instead of +0's 0xFFFF
        assert updated == 0 and checksum(changed) == 0xFFFF


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 0xFFFE, 0xFFFF]) | st.integers(0, 0xFFFF), max_size=8),
       st.sampled_from([b"", b"\0\0", b"\xff\xff", b"\0", b"\x80"]) | st.binary(max_size=40))
def test_extra_words_equal_explicit_words(words: list[int], data: bytes) -> None:
    # *extra* stands for 16-bit words summed elsewhere (a pseudo-header): the -0/+0 care applies
    # to the whole, e.g. extra 0xFFFF over zero data is negative zero.
    explicit = b"".join(w.to_bytes(2, "big") for w in words)
    assert checksum(data, sum(words)) == reference_checksum(explicit + data)
    assert finish(ones_sum(explicit) + ones_sum(data)) == reference_checksum(explicit + data)
