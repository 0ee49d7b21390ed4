"""`usernet demo` as a student reads it: a heading first, both hosts on the wire, a short TCP
conversation with its handshake and an orderly close."""

from __future__ import annotations

import io
import re
import shutil

import pytest

from usernet.demo import run_demo

_LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{6} (?P<host>\w+) > (?P<summary>.*)")
_TCP = re.compile(r"IP (?P<src>[\d.]+)\.\d+ > (?P<dst>[\d.]+)\.\d+: Flags \[(?P<flags>[^\]]*)\]")


@pytest.fixture(scope="module")
def demo() -> tuple[int, str]:
    out = io.StringIO()
    code = run_demo(out=out)
    return code, out.getvalue()


def tcp_segments(text: str) -> list[tuple[str, str]]:
    """``(host, flags)`` of every traced TCP segment, in wire order."""
    found = []
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match:
            tcp = _TCP.match(match["summary"])
            if tcp:
                found.append((match["host"], tcp["flags"]))
    return found


def test_demo_passes_and_starts_with_its_heading(demo) -> None:
    code, text = demo
    assert code == 0, text
    assert text.splitlines()[0].startswith("== alice and bob plug into an in-memory switch")
    assert text.rstrip().endswith("demo passed")


def test_both_hosts_appear_in_the_trace(demo) -> None:
    _, text = demo
    hosts = {m["host"] for m in map(_LINE.fullmatch, text.splitlines()) if m}
    assert hosts == {"alice", "bob"}
    assert "alice > ARP who-has 10.0.0.2 tell 10.0.0.1" in text
    assert "bob > ARP reply 10.0.0.2 is-at" in text
    assert "ICMP 10.0.0.2 udp port 9999 unreachable" in text


def test_tcp_part_has_handshake_data_and_fin_both_ways(demo) -> None:
    _, text = demo
    segments = tcp_segments(text)
    assert segments[:3] == [("alice", "S"), ("bob", "S."), ("alice", ".")]
    assert any(host == "alice" and "F" in flags for host, flags in segments)
    assert any(host == "bob" and "F" in flags for host, flags in segments)
    assert len(segments) <= 30, "the TCP part should stay short enough to read"
    first_syn = next(i for i, line in enumerate(text.splitlines()) if "Flags [S]," in line)
    dump = text.splitlines()[first_syn + 1:first_syn + 7]
    assert dump[0].startswith("  eth: ") and any(line.startswith("  tcp: ") for line in dump)
    assert "Flags [S], seq 0," in text and "Flags [S.], seq 0, ack 1," in text  # relative numbers


def test_close_is_orderly_no_rst(demo) -> None:
    _, text = demo
    assert not [flags for _, flags in tcp_segments(text) if "R" in flags]


def test_quiet_demo_has_no_trace() -> None:
    out = io.StringIO()
    assert run_demo(trace=False, out=out) == 0
    text = out.getvalue()
    assert text.startswith("== ") and not _LINE.search(text) and "demo passed" in text


def test_alice_resolves_bob_by_name_before_they_talk(demo) -> None:
    """The DHCP lease gave alice bob's DNS server and the search domain; TCP then connects by name."""
    _, text = demo
    assert "   bob -> 10.0.0.2 (bob's DNS answers for bob.demo.test)" in text
    assert "alice.demo.test -> 10.0.0.1" in text
    assert text.index("alice looks up") < text.index("TCP echo on bob's port 7")


def test_demo_ends_with_https_by_name(demo) -> None:
    _, text = demo
    step = text[text.index("== HTTPS by name"):]
    if shutil.which("openssl") is None:
        assert "skipped: making a certificate needs the openssl command line" in step
    else:
        assert "alice got 200 OK: 'hello 10.0.0.1, from a WSGI app on bob (https)'" in step
    assert step.index("== counters: alice") > 0  # the last step before the counters
