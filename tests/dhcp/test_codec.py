"""The DHCP codec (wire/dhcp.py): against scapy's BOOTP/DHCP layers both ways, RFC 3396 long
options and option overload, one test per ParseError reason, and hypothesis garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usernet.wire import dhcp
from usernet.wire.errors import ParseError
from usernet.wire.ipv4 import addr

scapy_all = pytest.importorskip("scapy.all")
from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402

MAC = bytes.fromhex("020000000042")


def _msg(kind: int = dhcp.DISCOVER, **options: bytes) -> dhcp.DhcpMessage:
    opts = {dhcp.OPT_MESSAGE_TYPE: bytes((kind,))}
    opts.update({int(k[1:]): v for k, v in options.items()})
    return dhcp.DhcpMessage(op=dhcp.BOOTREQUEST, xid=0x12345678, chaddr=MAC, options=opts)


def test_round_trip_of_every_field() -> None:
    message = dhcp.DhcpMessage(op=dhcp.BOOTREPLY, xid=0xDEADBEEF, chaddr=MAC, htype=1, hops=2, secs=300,
                               flags=dhcp.FLAG_BROADCAST, ciaddr=addr("10.0.0.9"), yiaddr=addr("10.0.0.10"),
                               siaddr=addr("10.0.0.1"), giaddr=addr("10.1.0.1"), sname=b"server", file=b"boot.img",
                               options={dhcp.OPT_MESSAGE_TYPE: bytes((dhcp.ACK,)),
                                        dhcp.OPT_SERVER_ID: dhcp.ip_bytes(addr("10.0.0.1")),
                                        dhcp.OPT_LEASE_TIME: dhcp.u32_bytes(3600),
                                        dhcp.OPT_DNS: dhcp.ip_bytes(addr("1.1.1.1"), addr("8.8.8.8")),
                                        dhcp.OPT_DOMAIN: b"example.test", 200: b""})
    raw = dhcp.build(message)
    assert len(raw) >= dhcp.BOOTP_MIN_LEN
    assert dhcp.parse(raw) == message
    parsed = dhcp.parse(raw)
    assert parsed.message_type == dhcp.ACK and parsed.broadcast
    assert parsed.ips(dhcp.OPT_DNS) == [addr("1.1.1.1"), addr("8.8.8.8")]
    assert parsed.u32(dhcp.OPT_LEASE_TIME) == 3600 and parsed.text(dhcp.OPT_DOMAIN) == "example.test"
    assert parsed.options[200] == b""  # unknown options are kept


def test_ours_read_by_scapy() -> None:
    message = _msg(dhcp.REQUEST, o50=dhcp.ip_bytes(addr("10.0.0.7")), o54=dhcp.ip_bytes(addr("10.0.0.1")),
                   o12=b"alice", o55=bytes([1, 3, 6, 15]), o61=b"\x01" + MAC)
    message.secs = 4
    packet = BOOTP(dhcp.build(message))
    assert packet.op == 1 and packet.xid == 0x12345678 and packet.chaddr[:6] == MAC and packet.secs == 4
    options = {o[0]: o[1:] for o in packet[DHCP].options if isinstance(o, tuple)}
    assert options["message-type"] == (3,)
    assert options["requested_addr"] == ("10.0.0.7",)
    assert options["server_id"] == ("10.0.0.1",)
    assert options["hostname"] == (b"alice",)
    assert options["param_req_list"] == ([1, 3, 6, 15],)
    assert "end" in packet[DHCP].options


@settings(max_examples=150, deadline=None)
@given(kind=st.integers(1, 8), xid=st.integers(0, 2**32 - 1), yiaddr=st.integers(0, 2**32 - 1),
       lease=st.integers(0, 2**32 - 1), hostname=st.binary(min_size=1, max_size=60),
       dns=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8), flags=st.sampled_from([0, 0x8000]))
def test_scapys_read_by_ours(kind: int, xid: int, yiaddr: int, lease: int, hostname: bytes, dns: list[int],
                             flags: int) -> None:
    from scapy.utils import ltoa

    packet = BOOTP(op=2, xid=xid, yiaddr=ltoa(yiaddr), flags=flags, chaddr=MAC + bytes(10)) / DHCP(options=[
        ("message-type", kind), ("lease_time", lease), ("hostname", hostname),
        ("name_server", *[ltoa(a) for a in dns]), "end"])
    parsed = dhcp.parse(bytes(packet))
    assert parsed.op == 2 and parsed.xid == xid and parsed.yiaddr == yiaddr and parsed.flags == flags
    assert parsed.chaddr[:6] == MAC  # scapy sends hlen 6
    assert parsed.message_type == kind and parsed.u32(dhcp.OPT_LEASE_TIME) == lease
    assert parsed.options[dhcp.OPT_HOSTNAME] == hostname and parsed.ips(dhcp.OPT_DNS) == dns
    # and back: our encoding of what we parsed is read identically by scapy
    again = BOOTP(dhcp.build(parsed))
    assert again.xid == xid and bytes(again[DHCP]).startswith(bytes(packet[DHCP])[:3])


def test_long_option_split_and_joined_rfc3396() -> None:
    value = bytes(range(256)) * 3  # 768 bytes: four instances (255, 255, 255, 3)
    raw = dhcp.build(_msg(o224=value), max_size=1500)
    body = raw[dhcp.MIN_LEN:]
    instances = []
    i = 0
    while body[i] != dhcp.OPT_END:
        if body[i] == 224:
            instances.append(body[i + 1])
        i += 2 + body[i + 1] if body[i] else 1
    assert instances == [255, 255, 255, 3]
    assert dhcp.parse(raw).options[224] == value
    # scapy sees the same instances
    assert [o[1] for o in BOOTP(raw)[DHCP].options if isinstance(o, tuple) and o[0] == 224] == \
        [value[:255], value[255:510], value[510:765], value[765:]]


def test_instances_concatenated_in_order_across_fields_with_overload() -> None:
    """RFC 3396 7: options field, then file, then sname, in that order."""
    header = bytearray(dhcp.build(_msg(), max_size=576)[:dhcp.HEADER_LEN])
    header[44:108] = (bytes((99, 2)) + b"EF" + bytes((dhcp.OPT_END,))).ljust(64, b"\0")   # sname
    header[108:236] = (bytes((99, 2)) + b"CD" + bytes((dhcp.OPT_END,))).ljust(128, b"\0")  # file
    options = bytes((53, 1, 1, 52, 1, 3, 99, 2)) + b"AB" + bytes((255,))
    parsed = dhcp.parse(bytes(header) + dhcp.MAGIC + options)
    assert parsed.options[99] == b"ABCDEF"
    assert parsed.sname == b"" and parsed.file == b""
    assert dhcp.OPT_OVERLOAD not in parsed.options


def test_build_overloads_file_then_sname_when_options_do_not_fit() -> None:
    big = {200 + i: bytes([i]) * 40 for i in range(11)}  # 11 * 42 = 462 bytes: options, file and sname
    message = _msg()
    message.options.update(big)
    raw = dhcp.build(message, max_size=576)
    assert len(raw) <= 576 - 28
    assert raw[dhcp.MIN_LEN:dhcp.MIN_LEN + 3] == bytes((dhcp.OPT_OVERLOAD, 1, 3))
    assert dhcp.parse(raw).options == message.options
    with pytest.raises(ValueError):
        huge = _msg()
        huge.options[250] = bytes(2000)
        dhcp.build(huge, max_size=576)


def test_domain_search_option_rfc3397() -> None:
    encoded = dhcp.encode_domain_search(["eng.example.com", "example.com"])
    assert dhcp.decode_domain_search(encoded) == ["eng.example.com", "example.com"]
    # with a compression pointer: "example.com" then "eng" + pointer to offset 0
    compressed = b"\x07example\x03com\x00\x03eng\xc0\x00"
    assert dhcp.decode_domain_search(compressed) == ["example.com", "eng.example.com"]
    assert dhcp.decode_domain_search(b"\xc0\x00") == []  # a loop ends the list
    assert dhcp.decode_domain_search(b"\x05ab") == []


def _good() -> bytearray:
    return bytearray(dhcp.build(_msg()))


REASONS = {
    "dhcp.truncated": bytes(_good()[:239]),
    "dhcp.bad_op": bytes([3]) + bytes(_good()[1:]),
    "dhcp.bad_hlen": bytes(_good()[:2]) + bytes([17]) + bytes(_good()[3:]),
    "dhcp.bad_magic": bytes(_good()[:236]) + b"\x63\x82\x53\x64" + bytes(_good()[240:]),
    "dhcp.bad_option": bytes(_good()[:240]) + bytes((53, 1, 1, 12, 10)) + b"abc",
    "dhcp.bad_overload": bytes(_good()[:240]) + bytes((53, 1, 1, 52, 1, 4, 255)),
    "dhcp.bad_message_type": bytes(_good()[:240]) + bytes((53, 1, 9, 255)),
}


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_each_parse_error_reason(reason: str) -> None:
    with pytest.raises(ParseError) as info:
        dhcp.parse(REASONS[reason])
    assert info.value.reason == reason


def test_missing_message_type_and_missing_end_option() -> None:
    with pytest.raises(ParseError, match="bad_message_type"):
        dhcp.parse(bytes(_good()[:240]) + bytes((255,)))
    # no END option: the buffer's end ends the options (lenient, as dnsmasq and Linux clients are)
    assert dhcp.parse(bytes(_good()[:240]) + bytes((53, 1, 2))).message_type == dhcp.OFFER


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=700))
def test_garbage_raises_only_parse_error(data: bytes) -> None:
    try:
        message = dhcp.parse(data)
    except ParseError as err:
        assert err.reason.startswith("dhcp.")
        return
    message.ips(dhcp.OPT_DNS), message.text(dhcp.OPT_HOSTNAME), message.u16(dhcp.OPT_MAX_SIZE)  # noqa: B018


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 699), st.integers(0, 255)), max_size=12), st.integers(240, 700))
def test_mutated_messages_raise_only_parse_error(edits: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(dhcp.build(_msg(dhcp.REQUEST, o50=dhcp.ip_bytes(1), o12=b"host", o77=bytes(300)), max_size=1500))
    for at, value in edits:
        if at < len(raw):
            raw[at] = value
    try:
        message = dhcp.parse(bytes(raw[:cut]))
    except ParseError:
        return
    dhcp.decode_domain_search(message.options.get(dhcp.OPT_DOMAIN_SEARCH, b"\x03abc\x00"))
