"""The DNS responder machine (records, PTR, NXDOMAIN/NODATA with SOA, TC, rate limit, no
amplification) and the whole path on the in-memory switch: getaddrinfo, create_connection by name,
hosts tables, search domains, TCP fallback, forwarding, error codes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

import usernet
from usernet.apps.dns import parse_spec, serve_dns
from usernet.links import Switch
from usernet.proto.dns_server import DnsResponder, Forward, ResponderConfig
from usernet.wire import dns

A_IP, B_IP, C_IP = "10.3.0.1", "10.3.0.2", "10.3.0.3"


def ask(responder: DnsResponder, name: str, qtype: int = dns.A, client: str = "10.0.0.1", now: float = 0.0,
        edns: int | None = dns.EDNS_UDP_SIZE, transport: str = "udp") -> dns.Message:
    out = responder.handle(dns.query(77, name, qtype, edns=edns), client, now, transport)
    assert isinstance(out, bytes)
    return dns.parse(out)


def trusted(_: str) -> bool:
    return True


def test_answers_records_ptr_nxdomain_and_nodata() -> None:
    r = DnsResponder({"www.test": ["10.1.1.1", "10.1.1.2"], "v6.test": "fd00::5"}, trusted=trusted)
    m = ask(r, "WWW.test")
    assert m.aa and m.qr and m.rcode == dns.NOERROR and m.id == 77
    assert [(x.name, x.data) for x in m.answers] == [("WWW.test", "10.1.1.1"), ("WWW.test", "10.1.1.2")]
    assert ask(r, "v6.test", dns.AAAA).answers[0].data == "fd00::5"
    assert {x.rtype for x in ask(r, "www.test", dns.ANY).answers} == {dns.A}
    nodata = ask(r, "v6.test", dns.A)
    assert nodata.rcode == dns.NOERROR and not nodata.answers and nodata.authority[0].rtype == dns.SOA
    nx = ask(r, "missing.test")
    assert nx.rcode == dns.NXDOMAIN and nx.aa and nx.authority[0].rtype == dns.SOA
    ptr = ask(r, dns.reverse_name("10.1.1.2"), dns.PTR)
    assert [x.data for x in ptr.answers] == ["www.test"]
    assert ask(r, dns.reverse_name("fd00::5"), dns.PTR).answers[0].data == "v6.test"
    assert ask(r, dns.reverse_name("10.9.9.9"), dns.PTR).rcode == dns.NXDOMAIN
    assert ask(r, "www.test").edns is not None and ask(r, "www.test", edns=None).edns is None


def test_dynamic_names_from_dhcp_with_domain() -> None:
    leases = {"laptop": "10.3.0.50"}
    r = DnsResponder(dynamic=lambda: leases, domain="lan", trusted=trusted)
    assert ask(r, "laptop").answers[0].data == "10.3.0.50"
    assert ask(r, "laptop.lan").answers[0].data == "10.3.0.50"
    leases["phone"] = "10.3.0.51"
    assert ask(r, "phone.lan").answers[0].data == "10.3.0.51"


def test_refusals_and_drops() -> None:
    r = DnsResponder({"x.test": "10.0.0.1"})
    query = dns.parse(dns.query(1, "x.test", dns.A))
    notify = dns.build(dns.Message(1, 4 << 11, query.questions))
    assert dns.parse(r.handle(notify, "10.0.0.1", 0.0)).rcode == dns.NOTIMP  # type: ignore[arg-type]
    two = dns.build(dns.Message(1, 0, query.questions * 2))
    assert dns.parse(r.handle(two, "10.0.0.1", 0.0)).rcode == dns.FORMERR  # type: ignore[arg-type]
    chaos = dns.build(dns.Message(1, 0, [dns.Question("x.test", dns.A, 3)]))
    assert dns.parse(r.handle(chaos, "10.0.0.1", 0.0)).rcode == dns.REFUSED  # type: ignore[arg-type]
    response = dns.build(dns.Message(1, dns.QR, query.questions))
    assert r.handle(response, "10.0.0.1", 0.0) is None and r.counters["dns.rx_not_query"] == 1
    assert r.handle(b"\x00\x01\x02", "10.0.0.1", 0.0) is None and r.counters["dns.truncated"] == 1


def test_large_answers_truncate_over_udp_and_fit_over_tcp() -> None:
    r = DnsResponder({"many.test": [f"10.2.{i // 250}.{i % 250}" for i in range(120)]}, trusted=trusted)
    small = ask(r, "many.test", edns=None)  # 512 bytes without EDNS
    assert small.tc and not small.answers and small.questions[0].name == "many.test"
    edns = ask(r, "many.test")  # 120 * 16 + header > 1232
    assert edns.tc and not edns.answers
    tcp = ask(r, "many.test", transport="tcp")
    assert not tcp.tc and len(tcp.answers) == 120
    fits = DnsResponder({"few.test": [f"10.2.0.{i}" for i in range(20)]}, trusted=trusted)
    assert not ask(fits, "few.test", edns=None).tc  # 20 * 16 + 30 < 512


def test_no_amplification_for_unknown_clients() -> None:
    r = DnsResponder({"x.test": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}, trusted=lambda ip: ip.startswith("10.3."))
    query = dns.query(5, "x.test", dns.A, edns=None)
    stranger = r.handle(query, "192.0.2.66", 0.0)
    assert isinstance(stranger, bytes) and len(stranger) <= len(query) and dns.parse(stranger).tc
    nx = r.handle(dns.query(5, "nothing.test", dns.A, edns=None), "192.0.2.66", 0.0)
    assert isinstance(nx, bytes) and len(nx) <= len(query) + len("nothing") - 1
    local = r.handle(query, "10.3.0.9", 0.0)
    assert isinstance(local, bytes) and len(dns.parse(local).answers) == 3
    # A client that used TCP has proved its address: full UDP answers from then on.
    r.handle(query, "192.0.2.77", 0.0, "tcp")
    proven = r.handle(query, "192.0.2.77", 0.0)
    assert isinstance(proven, bytes) and len(dns.parse(proven).answers) == 3


def test_per_client_rate_limit_and_bounded_table() -> None:
    r = DnsResponder({"x.test": "10.0.0.1"}, config=ResponderConfig(rate=10, burst=5, max_clients=3),
                     trusted=trusted)
    query = dns.query(1, "x.test", dns.A)
    got = [r.handle(query, "10.0.0.1", 0.0) for _ in range(8)]
    assert sum(x is not None for x in got) == 5 and r.counters["dns.rate_limited"] == 3
    assert r.handle(query, "10.0.0.2", 0.0) is not None  # others are not affected
    assert r.handle(query, "10.0.0.1", 0.1) is not None  # 0.1 s at 10/s: one token back
    for i in range(10):
        r.handle(query, f"10.9.0.{i}", 0.2)
    assert len(r._buckets) == 3


def test_forward_and_relay() -> None:
    r = DnsResponder({"local.test": "10.0.0.1"}, forward=True, trusted=trusted)
    out = r.handle(dns.query(9, "far.example", dns.A), "10.0.0.5", 0.0)
    assert isinstance(out, Forward) and out.query.questions[0].name == "far.example"
    upstream = dns.build(dns.Message(4242, dns.QR | dns.RA, [dns.Question("FAR.example", dns.A)],
                                     [dns.Record("FAR.example", dns.A, 30, "192.0.2.1")]))
    relayed = dns.parse(r.relay(out, upstream) or b"")
    assert relayed.id == 9 and relayed.answers[0].data == "192.0.2.1" and relayed.ra and not relayed.aa
    assert dns.parse(r.relay(out, None) or b"").rcode == dns.SERVFAIL
    assert ask(r, "local.test").answers[0].data == "10.0.0.1"  # local names are never forwarded


def test_spec() -> None:
    spec = parse_spec("5353,record=a.test=10.0.0.1,record=a.test=10.0.0.2,record=b.test=fd00::1,forward=10.0.0.53")
    assert spec["port"] == 5353 and spec["records"] == {"a.test": ["10.0.0.1", "10.0.0.2"], "b.test": ["fd00::1"]}
    assert spec["forward"] == "10.0.0.53"
    for bad in ("0", "53,record=a.test", "53,record=a.test=999.1.1.1", "53,forward=x", "53,hosts=/no/such",
                "53,what=1"):
        with pytest.raises(ValueError):
            parse_spec(bad)


# ----------------------------------------------------------------- on the switch

@pytest.fixture
def net(tmp_path) -> Iterator[tuple[usernet.Host, usernet.Host]]:  # type: ignore[no-untyped-def]
    switch = Switch()
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(f"{B_IP} server.lan server\n10.3.0.99 down.lan\n{B_IP} down.lan\n")
    with usernet.Host(switch.port(), addr=f"{A_IP}/24", seed=1, dns=[B_IP]) as a, \
            usernet.Host(switch.port(), addr=f"{B_IP}/24", seed=2) as b:
        serve_dns(b, 53, records={"www.test": [B_IP], "many.test": [f"10.4.{i // 200}.{i % 200}" for i in range(300)],
                                  "v6.test": "fd00::1", "multi.test": ["10.3.0.98", B_IP]},
                  hosts_files=[str(hosts_file)])
        yield a, b


def echo_once(host: usernet.Host, port: int) -> threading.Thread:
    server = host.create_server(("", port))

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(100))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_getaddrinfo_by_name_looks_like_the_socket_module(net) -> None:  # type: ignore[no-untyped-def]
    a, _ = net
    infos = a.getaddrinfo("www.test", "http")
    assert infos == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (B_IP, 80))]
    infos = a.getaddrinfo("multi.test", 53, flags=socket.AI_CANONNAME)
    assert [i[4] for i in infos] == [("10.3.0.98", 53), ("10.3.0.98", 53), (B_IP, 53), (B_IP, 53)]
    assert infos[0][3] == "multi.test" and infos[1][3] == ""
    assert len({i[4][0] for i in a.getaddrinfo("many.test", 1, type=socket.SOCK_DGRAM)}) == 300  # over TCP
    with pytest.raises(socket.gaierror) as info:
        a.getaddrinfo("nothing.test", 80)
    assert info.value.errno == socket.EAI_NONAME
    with pytest.raises(socket.gaierror) as info:
        a.getaddrinfo("v6.test", 80)
    assert info.value.errno == socket.EAI_NODATA
    with pytest.raises(socket.gaierror) as info:
        a.getaddrinfo("www.test", 80, socket.AF_INET6)
    assert info.value.errno == socket.EAI_FAMILY
    with pytest.raises(socket.gaierror) as info:
        a.getaddrinfo("www.test", 80, flags=socket.AI_NUMERICHOST)
    assert info.value.errno == socket.EAI_NONAME
    assert a.getaddrinfo(None, 80, type=socket.SOCK_STREAM)[0][4] == ("127.0.0.1", 80)
    assert a.getaddrinfo(None, 80, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][4] == ("0.0.0.0", 80)
    assert a.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)[0][4] == ("127.0.0.1", 80)
    assert a.resolver.resolve("v6.test", dns.AAAA).addresses == ["fd00::1"]
    counters = a.counters
    assert counters["dns.tcp_fallbacks"] == 1 and counters.get("stack.internal_error", 0) == 0


def test_create_connection_by_name_tries_each_address(net) -> None:  # type: ignore[no-untyped-def]
    a, b = net
    thread = echo_once(b, 7007)
    # multi.test is 10.3.0.98 (nobody: ARP fails, host unreachable) then B: the second one answers.
    started = time.monotonic()
    with a.create_connection(("multi.test", 7007), timeout=5) as conn:
        conn.sendall(b"by name")
        assert conn.recv(100) == b"by name" and conn.getpeername() == (B_IP, 7007)
    thread.join(5)
    assert time.monotonic() - started < 10


def test_hosts_file_names_served_and_connection_through_the_responder(net) -> None:  # type: ignore[no-untyped-def]
    a, b = net
    assert a.resolve_all("server.lan") == [B_IP] and a.resolve_all("server") == [B_IP]
    thread = echo_once(b, 7008)
    with a.create_connection(("server.lan", 7008), timeout=5) as conn:
        conn.sendall(b"hi")
        assert conn.recv(10) == b"hi"
    thread.join(5)


def test_search_domains_hosts_table_and_no_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A_IP}/24", seed=3, dns=[B_IP], hosts={"db": "10.3.0.77"}) as a, \
            usernet.Host(switch.port(), addr=f"{B_IP}/24", seed=4) as b, \
            usernet.Host(switch.port(), addr=f"{C_IP}/24", seed=5) as c:
        serve_dns(b, 53, records={"printer.corp.test": "10.3.0.60"})
        a.search_domains = ["corp.test"]
        assert a.resolve_all("printer") == ["10.3.0.60"]
        assert a.resolve_all("db") == ["10.3.0.77"]  # the hosts table, before any server
        with pytest.raises(socket.gaierror) as info:
            c.getaddrinfo("printer.corp.test", 80)  # c has no DNS server
        assert info.value.errno == socket.EAI_NONAME
        # A server that does not answer at all: EAI_AGAIN after the retries (a short config here).
        a.dns_servers = ["10.3.0.200"]
        a.resolver.client.config.timeout = 0.05
        a.resolver.client.config.max_timeout = 0.1
        with pytest.raises(socket.gaierror) as info:
            a.getaddrinfo("elsewhere.test", 80)
        assert info.value.errno == socket.EAI_AGAIN
        # A closed port (ICMP port unreachable) fails over at once, without the timeouts.
        a.dns_servers = [C_IP, B_IP]
        a.resolver.client.config.timeout = 5.0
        started = time.monotonic()
        assert a.resolve_all("printer.corp.test") == ["10.3.0.60"]
        assert time.monotonic() - started < 2


def test_servfail_from_an_upstream_gives_eai_again(net) -> None:  # type: ignore[no-untyped-def]
    a, b = net
    switch_host = b
    serve_dns(switch_host, 5300, forward="10.3.0.201")  # the upstream does not exist
    from usernet.api.resolver import Resolver
    from usernet.proto.dns_client import ResolverConfig

    a._resolver = Resolver(a, ResolverConfig(port=5300, rounds=1, timeout=6.0))
    with pytest.raises(socket.gaierror) as info:
        a.getaddrinfo("far.away.example", 80)
    assert info.value.errno == socket.EAI_AGAIN
    assert b.counters["dns.forward_failed"] == 1


def test_one_host_connects_to_itself_by_name_through_its_own_responder() -> None:
    """On one host over the loopback: the responder on 127.0.0.1, an echo server, a client by name."""
    with usernet.Host(Switch().port(), addr=f"{A_IP}/24", seed=9, dns=["127.0.0.1"]) as host:
        serve_dns(host, 53, records={"self.test": A_IP, "lo.test": "127.0.0.1"})
        for name in ("self.test", "lo.test"):
            thread = echo_once(host, 7100)
            with host.create_connection((name, 7100), timeout=5) as conn:
                conn.sendall(name.encode())
                assert conn.recv(100) == name.encode()
            thread.join(5)


def test_garbage_queries_never_raise_and_never_get_a_larger_answer() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    responder = DnsResponder({"x.test": ["10.0.0.1"] * 1}, config=ResponderConfig(rate=1e9, burst=10**9))

    @settings(max_examples=600, deadline=None)
    @given(st.binary(max_size=200) | st.builds(lambda tail: dns.query(1, "x.test", dns.A)[:12] + tail,
                                               st.binary(max_size=60)))
    def check(data: bytes) -> None:
        out = responder.handle(data, "192.0.2.1", 0.0)
        assert out is None or (isinstance(out, bytes) and len(out) <= max(len(data), 12))

    check()
