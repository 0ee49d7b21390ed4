"""The stub resolver machine in virtual time: retry schedule, failover, cache expiry, negative
caching, search domains, CNAME chains, TC -> TCP, EDNS fallback, and spoofed answers ignored
(wrong ID, source address, source port, question)."""

from __future__ import annotations

import random

import pytest

from usernet.proto.dns_client import (
    NODATA,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    TIMEOUT,
    Close,
    DnsClient,
    Lookup,
    ResolverConfig,
    Send,
    hosts_table,
    parse_hosts,
)
from usernet.wire import dns

S1, S2 = "10.0.0.53", "10.0.0.54"


def client(servers=(S1, S2), **kw) -> DnsClient:  # type: ignore[no-untyped-def]
    config = kw.pop("config", ResolverConfig())
    return DnsClient(list(servers), rng=random.Random(7), config=config, **kw)


def sends(lookup: Lookup) -> list[Send]:
    return [a for a in lookup.actions() if isinstance(a, Send)]


def reply(send: Send, answers=(), rcode=dns.NOERROR, authority=(), tc=False, ident=None, question=None) -> bytes:  # type: ignore[no-untyped-def]
    query = dns.parse(send.payload)
    flags = dns.QR | dns.RD | dns.RA | rcode | (dns.TC if tc else 0)
    return dns.build(dns.Message(query.id if ident is None else ident, flags,
                                 [question or query.questions[0]], list(answers), list(authority)))


def a(name: str, address: str, ttl: int = 300) -> dns.Record:
    return dns.Record(name, dns.A, ttl, address)


def soa(zone: str, ttl: int = 900, minimum: int = 60) -> dns.Record:
    return dns.Record(zone, dns.SOA, ttl, ("ns." + zone, "admin." + zone, 1, 2, 3, 4, minimum))


def test_answer_with_every_address_and_a_random_id_per_query() -> None:
    c = client()
    lookup = c.lookup("www.example.com", dns.A, 0.0)
    (send,) = sends(lookup)
    assert (send.transport, send.server, send.port) == ("udp", S1, 53)
    query = dns.parse(send.payload)
    assert query.questions == [dns.Question("www.example.com", dns.A)] and query.rd and query.udp_size == 1232
    lookup.receive(send.attempt, S1, 53, reply(send, [a("www.example.com", f"10.1.0.{i}") for i in range(1, 6)]), 0.01)
    assert lookup.done and lookup.answer is not None
    assert lookup.answer.addresses == [f"10.1.0.{i}" for i in range(1, 6)]  # lneto issue 186: all of them
    assert lookup.actions() == [Close(send.attempt)]
    ids = {dns.parse(sends(c.lookup(f"n{i}.example", dns.A, 0.0))[0].payload).id for i in range(50)}
    assert len(ids) > 45


def test_retry_schedule_and_failover_across_servers() -> None:
    c = client()
    lookup = c.lookup("slow.example", dns.A, 0.0)
    timeline = []
    now = 0.0
    while not lookup.done:
        for send in sends(lookup):
            timeline.append((round(now, 3), send.server))
        assert lookup.deadline is not None
        now = lookup.deadline
        lookup.on_timer(now)
    # Round 1 at 1 s per try, round 2 at 2 s, round 3 at 4 s: S1, S2, S1, S2, S1, S2; given up at 14 s.
    assert timeline == [(0.0, S1), (1.0, S2), (2.0, S1), (4.0, S2), (6.0, S1), (10.0, S2)]
    assert now == 14.0 and lookup.error is not None and lookup.error.kind == TIMEOUT
    assert c.counters["dns.retransmits"] == 5 and c.counters["dns.timeouts"] == 1


def test_late_answer_to_an_earlier_attempt_is_taken() -> None:
    c = client()
    lookup = c.lookup("late.example", dns.A, 0.0)
    (first,) = sends(lookup)
    lookup.on_timer(1.0)
    (second,) = sends(lookup)
    assert second.server == S2
    lookup.receive(first.attempt, S1, 53, reply(first, [a("late.example", "10.9.9.9")]), 1.2)
    assert lookup.answer is not None and lookup.answer.server == S1
    assert {x.attempt for x in lookup.actions() if isinstance(x, Close)} == {first.attempt, second.attempt}


def test_servfail_moves_to_the_next_server_at_once_and_all_failing_is_servfail() -> None:
    c = client()
    lookup = c.lookup("broken.example", dns.A, 0.0)
    for _ in range(6):
        (send,) = sends(lookup)
        lookup.receive(send.attempt, send.server, 53, reply(send, rcode=dns.SERVFAIL), 0.1)
    assert lookup.error is not None and lookup.error.kind == SERVFAIL
    lookup = c.lookup("refused.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, rcode=dns.REFUSED), 0.1)
    (send,) = sends(lookup)
    assert send.server == S2
    lookup.receive(send.attempt, S2, 53, reply(send, [a("refused.example", "10.2.2.2")]), 0.2)
    assert lookup.answer is not None and lookup.answer.addresses == ["10.2.2.2"]


def test_refused_everywhere_is_refused() -> None:
    c = client(servers=[S1], config=ResolverConfig(rounds=1))
    lookup = c.lookup("x.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, rcode=dns.NOTIMP), 0.1)
    assert lookup.error is not None and lookup.error.kind == REFUSED


@pytest.mark.parametrize("spoof", ["id", "address", "port", "name", "type", "not_response"])
def test_spoofed_answers_are_ignored(spoof: str) -> None:
    c = client()
    lookup = c.lookup("bank.example", dns.A, 0.0)
    (send,) = sends(lookup)
    evil = [a("bank.example", "6.6.6.6")]
    src, port = S1, 53
    if spoof == "id":
        payload = reply(send, evil, ident=dns.parse(send.payload).id ^ 1)
    elif spoof == "name":
        payload = reply(send, evil, question=dns.Question("other.example", dns.A))
    elif spoof == "type":
        payload = reply(send, evil, question=dns.Question("bank.example", dns.AAAA))
    elif spoof == "not_response":
        query = dns.parse(send.payload)
        payload = dns.build(dns.Message(query.id, dns.RD, query.questions, evil))
    else:
        payload = reply(send, evil)
        if spoof == "address":
            src = S2
        else:
            port = 5353
    lookup.receive(send.attempt, src, port, payload, 0.1)
    assert not lookup.done
    counter = {"id": "dns.wrong_id", "not_response": "dns.wrong_id", "address": "dns.wrong_source",
               "port": "dns.wrong_source", "name": "dns.wrong_question", "type": "dns.wrong_question"}[spoof]
    assert c.counters[counter] == 1
    lookup.receive(send.attempt, S1, 53, reply(send, [a("bank.example", "10.0.0.80")]), 0.2)
    assert lookup.answer is not None and lookup.answer.addresses == ["10.0.0.80"]


def test_question_case_may_differ() -> None:
    c = client()
    lookup = c.lookup("MiXeD.Example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, [a("mixed.example", "10.0.0.1")],
                                               question=dns.Question("mixed.EXAMPLE", dns.A)), 0.1)
    assert lookup.answer is not None


def test_cache_honours_ttl_and_is_bounded() -> None:
    c = client(config=ResolverConfig(cache_size=3))
    lookup = c.lookup("cached.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, [a("cached.example", "10.0.0.1", ttl=30)]), 0.0)
    hit = c.lookup("CACHED.example.", dns.A, 29.0)
    assert hit.done and hit.answer is not None and hit.answer.source == "cache" and hit.answer.ttl == 1
    assert sends(hit) == []
    miss = c.lookup("cached.example", dns.A, 30.0)
    assert not miss.done and len(sends(miss)) == 1
    for i in range(5):
        lk = c.lookup(f"n{i}.example", dns.A, 0.0)
        (send,) = sends(lk)
        lk.receive(send.attempt, S1, 53, reply(send, [a(f"n{i}.example", "10.0.0.2")]), 0.0)
    assert len(c.cache) == 3 and c.counters["dns.cache_evictions"] == 2
    assert ("n0.example", dns.A) not in c.cache and ("n4.example", dns.A) in c.cache


def test_negative_caching_from_the_soa_minimum() -> None:
    c = client()
    lookup = c.lookup("gone.example", dns.A, 0.0)
    (send,) = sends(lookup)
    # RFC 2308 5: min(SOA TTL 900, MINIMUM 60) = 60 s.
    lookup.receive(send.attempt, S1, 53, reply(send, rcode=dns.NXDOMAIN, authority=[soa("example")]), 0.0)
    assert lookup.error is not None and lookup.error.kind == NXDOMAIN
    again = c.lookup("gone.example", dns.A, 59.0)
    assert again.error is not None and again.error.kind == NXDOMAIN and sends(again) == []
    assert c.counters["dns.negative_cache_hits"] == 1
    later = c.lookup("gone.example", dns.A, 60.5)
    assert not later.done and len(sends(later)) == 1
    # NODATA is cached the same way; without a SOA nothing is cached (RFC 2308 5).
    lookup = c.lookup("v4only.example", dns.AAAA, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, authority=[soa("example", ttl=20, minimum=300)]), 0.0)
    assert lookup.error is not None and lookup.error.kind == NODATA
    assert c.lookup("v4only.example", dns.AAAA, 19.0).done and not c.lookup("v4only.example", dns.AAAA, 20.0).done
    lookup = c.lookup("nosoa.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, rcode=dns.NXDOMAIN), 0.0)
    assert not c.lookup("nosoa.example", dns.A, 1.0).done


def test_cname_chain_followed_and_requeried_when_cut() -> None:
    c = client()
    lookup = c.lookup("www.example", dns.A, 0.0)
    (send,) = sends(lookup)
    chain = [dns.Record("www.example", dns.CNAME, 100, "web.example"),
             dns.Record("web.example", dns.CNAME, 50, "edge.cdn.example")]
    lookup.receive(send.attempt, S1, 53, reply(send, chain), 0.0)
    assert not lookup.done
    (send,) = sends(lookup)
    assert dns.parse(send.payload).questions[0].name == "edge.cdn.example"
    lookup.receive(send.attempt, S1, 53, reply(send, [a("edge.cdn.example", "10.7.7.7", ttl=300),
                                                      a("edge.cdn.example", "10.7.7.8", ttl=300)]), 0.0)
    assert lookup.answer is not None
    assert (lookup.answer.canonical, lookup.answer.addresses, lookup.answer.ttl) == \
        ("edge.cdn.example", ["10.7.7.7", "10.7.7.8"], 50)
    assert c.lookup("www.example", dns.A, 1.0).answer is not None  # cached under the name asked


def test_cname_loop_and_overlong_chain_fail() -> None:
    c = client()
    lookup = c.lookup("loop.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, [dns.Record("loop.example", dns.CNAME, 1, "b.example"),
                                                      dns.Record("b.example", dns.CNAME, 1, "loop.example")]), 0.0)
    assert lookup.error is not None and lookup.error.kind == SERVFAIL
    lookup = c.lookup("n0.example", dns.A, 0.0)
    (send,) = sends(lookup)
    chain = [dns.Record(f"n{i}.example", dns.CNAME, 1, f"n{i + 1}.example") for i in range(12)]
    lookup.receive(send.attempt, S1, 53, reply(send, chain), 0.0)
    assert lookup.error is not None and lookup.error.kind == SERVFAIL


def test_truncated_answer_moves_to_tcp_on_the_same_server() -> None:
    c = client()
    lookup = c.lookup("big.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.on_timer(1.0)
    (second,) = sends(lookup)
    lookup.receive(second.attempt, S2, 53, reply(second, tc=True), 1.1)
    actions = lookup.actions()
    (tcp,) = [x for x in actions if isinstance(x, Send)]
    assert {x.attempt for x in actions if isinstance(x, Close)} == {send.attempt, second.attempt}
    assert (tcp.transport, tcp.server) == ("tcp", S2) and dns.parse(tcp.payload).edns is None
    many = [a("big.example", f"10.5.{i // 200}.{i % 200}") for i in range(300)]
    lookup.receive(tcp.attempt, S2, 53, reply(tcp, many), 1.2)  # not over UDP: ignored
    assert not lookup.done
    lookup.tcp_result(tcp.attempt, reply(tcp, many), 1.2)
    assert lookup.answer is not None and len(lookup.answer.addresses) == 300 and lookup.answer.transport == "tcp"
    assert c.counters["dns.tcp_fallbacks"] == 1


def test_tcp_failure_and_timeout_go_on_to_the_next_server() -> None:
    c = client()
    lookup = c.lookup("big.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, tc=True), 0.1)
    (tcp,) = sends(lookup)
    lookup.tcp_result(tcp.attempt, None, 0.2)
    (next_send,) = sends(lookup)
    assert (next_send.transport, next_send.server) == ("udp", S2)
    lookup.receive(next_send.attempt, S2, 53, reply(next_send, tc=True), 0.3)
    (tcp,) = sends(lookup)
    lookup.on_timer(0.3 + 5.0)
    (after,) = sends(lookup)
    assert (after.transport, after.server) == ("udp", S1)


def test_formerr_to_edns_retries_without_it() -> None:
    c = client()
    lookup = c.lookup("old.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, rcode=dns.FORMERR), 0.1)
    (plain,) = sends(lookup)
    assert plain.server == S1 and dns.parse(plain.payload).edns is None
    lookup.receive(plain.attempt, S1, 53, reply(plain, [a("old.example", "10.0.0.4")]), 0.2)
    assert lookup.answer is not None


def test_search_domains_for_single_label_names() -> None:
    c = client(search=["corp.example", "lab.example"])
    lookup = c.lookup("printer", dns.A, 0.0)
    asked = []
    for domain_answer in ("nx", "hit"):
        (send,) = sends(lookup)
        name = dns.parse(send.payload).questions[0].name
        asked.append(name)
        if domain_answer == "nx":
            lookup.receive(send.attempt, S1, 53, reply(send, rcode=dns.NXDOMAIN), 0.0)
        else:
            lookup.receive(send.attempt, S1, 53, reply(send, [a(name, "10.4.4.4")]), 0.0)
    assert asked == ["printer.corp.example", "printer.lab.example"]
    assert lookup.answer is not None and lookup.answer.name == "printer.lab.example"
    # Dotted and absolute names are asked as they are.
    assert c.candidates("a.b") == ["a.b"] and c.candidates("printer.") == ["printer"]
    assert c.candidates("printer") == ["printer.corp.example", "printer.lab.example", "printer"]


def test_all_candidates_negative_gives_nxdomain_or_nodata() -> None:
    c = client(search=["corp.example"])
    lookup = c.lookup("nothing", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, authority=[soa("corp.example")]), 0.0)  # NODATA
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, reply(send, rcode=dns.NXDOMAIN), 0.0)
    assert lookup.error is not None and lookup.error.kind == NODATA


def test_localhost_and_hosts_table_need_no_server() -> None:
    c = client(servers=[], hosts=hosts_table({"db": "10.8.0.1", "Web.Local": ["10.8.0.2", "fd00::2"]}))
    assert c.lookup("localhost", dns.A, 0).answer.addresses == ["127.0.0.1"]  # type: ignore[union-attr]
    assert c.lookup("foo.localhost", dns.AAAA, 0).answer.addresses == ["::1"]  # type: ignore[union-attr]
    assert c.lookup("DB", dns.A, 0).answer.addresses == ["10.8.0.1"]  # type: ignore[union-attr]
    assert c.lookup("web.local", dns.AAAA, 0).answer.addresses == ["fd00::2"]  # type: ignore[union-attr]
    nothing = c.lookup("elsewhere.example", dns.A, 0)
    assert nothing.error is not None and nothing.error.kind == "no_servers"


def test_hosts_file_format() -> None:
    table = parse_hosts("# comment\n127.0.0.1 localhost\n10.0.0.5  files.lan files  # trailing\n"
                        "fe80::1%eth0 router\nnot-an-address name\n10.0.0.6 files\n")
    assert table == {"localhost": ["127.0.0.1"], "files.lan": ["10.0.0.5"], "files": ["10.0.0.5", "10.0.0.6"],
                     "router": ["fe80::1"]}


def test_bad_names_fail_without_a_query() -> None:
    c = client()
    for bad in ("a..b", "x" * 64 + ".example"):
        lookup = c.lookup(bad, dns.A, 0.0)
        assert lookup.error is not None and lookup.error.kind == "bad_name" and sends(lookup) == []


def test_garbage_answers_are_counted_and_ignored() -> None:
    c = client()
    lookup = c.lookup("x.example", dns.A, 0.0)
    (send,) = sends(lookup)
    lookup.receive(send.attempt, S1, 53, b"\x00\x01", 0.1)
    lookup.receive(send.attempt, S1, 53, send.payload[:2] + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c", 0.1)
    assert not lookup.done and c.counters["dns.truncated"] == 1 and c.counters["dns.pointer_loop"] == 1
