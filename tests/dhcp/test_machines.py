"""The DHCP client and server machines in virtual time (RFC 2131, RFC 5227): every timer, every
exchange, the bounds. No I/O: tests/dhcp/harness.py carries messages between them."""

from __future__ import annotations

import json
import random

import pytest

from tests.dhcp.harness import SERVER_IP, Net, mac, server_config
from usernet.apps.dhcp import LeaseFileError, read_lease_file, write_lease_file
from usernet.proto import dhcp_client as dc
from usernet.proto.dhcp_client import Bind, ClientConfig, DhcpClient, Unbind
from usernet.proto.dhcp_server import DhcpServer
from usernet.wire import dhcp
from usernet.wire.ipv4 import addr, ntoa


def bound(net: Net, index: int = 0) -> str:
    lease = net.clients[index].lease
    assert lease is not None and net.clients[index].state == dc.BOUND
    return ntoa(lease.address)


def test_first_lease_the_whole_exchange() -> None:
    net = Net([DhcpServer(server_config())])
    client = net.add_client(1, hostname="alice")
    client.start(0.0)
    net.run_until(10.0)
    assert bound(net) == "10.9.0.100"
    assert [s.kind for s in net.log] == [dhcp.DISCOVER, dhcp.REQUEST]
    assert [m.message_type for _, _, m in net.replies] == [dhcp.OFFER, dhcp.ACK]
    request = net.sent(dhcp.REQUEST)[0].message
    # RFC 2131 4.3.2 SELECTING: server identifier and requested address, ciaddr 0, broadcast
    assert request.ip(dhcp.OPT_SERVER_ID) == SERVER_IP and request.ip(dhcp.OPT_REQUESTED_IP) == addr("10.9.0.100")
    assert request.ciaddr == 0 and net.sent(dhcp.REQUEST)[0].dst == 0xFFFFFFFF
    assert request.options[dhcp.OPT_CLIENT_ID] == b"\x01" + mac(1)
    assert request.text(dhcp.OPT_HOSTNAME) == "alice"
    lease = client.lease
    assert lease is not None
    assert (lease.prefix, lease.router, lease.dns, lease.domain, lease.lease_time) == (24, SERVER_IP, [SERVER_IP],
                                                                                        "lan", 120)
    # the server probed before offering; the client probed (RFC 5227) three times before binding
    assert [who for _, who, _ in net.probes] == ["server", "client", "client", "client"]
    assert net.events and isinstance(net.events[-1][2], Bind)
    assert net.servers[0].hostnames() == {"alice": "10.9.0.100"}
    assert client.counters["dhcp.client_leases"] == 1


def test_renew_at_t1_unicast_rebind_at_t2_broadcast_then_expiry() -> None:
    net = Net([DhcpServer(server_config(lease_time=3600))])
    client = net.add_client(1)
    client.start(0.0)
    net.run_until(10.0)
    lease = client.lease
    assert lease is not None
    t0 = lease.acquired
    assert lease.renew_at == t0 + 1800 and lease.rebind_at == t0 + 3150
    net.drop_to_server = lambda sent: sent.kind == dhcp.REQUEST  # the server goes silent
    net.run_until(t0 + 3600 + 1)
    renews = [s for s in net.sent(dhcp.REQUEST) if s.message.ciaddr]
    times = [round(s.time - t0, 2) for s in renews]
    # RENEWING: unicast at T1, then half the time left to T2 (at least 60 s), never past T2
    assert times[:6] == [1800, 2475, 2812.5, 2981.25, 3065.62, 3125.62]
    assert {s.dst for s in renews if s.time - t0 < 3150} == {SERVER_IP}
    # REBINDING at T2: broadcast, then half the time left to expiry (60 s at least), never past it
    rebinds = [s for s in renews if s.time - t0 >= 3150]
    assert [round(s.time - t0, 2) for s in rebinds] == [3150, 3375, 3487.5, 3547.5]
    assert {s.dst for s in rebinds} == {0xFFFFFFFF}
    assert all(s.message.ip(dhcp.OPT_SERVER_ID) is None and s.message.ip(dhcp.OPT_REQUESTED_IP) is None
               for s in renews)  # RFC 2131 table 5
    # expiry: the address goes, the client starts again with a DISCOVER at once
    unbinds = [(t, a) for t, _, a in net.events if isinstance(a, Unbind)]
    assert len(unbinds) == 1 and unbinds[0][1].reason == "expired" and unbinds[0][0] == t0 + 3600
    assert client.lease is None and client.counters["dhcp.client_expired"] == 1
    assert net.sent(dhcp.DISCOVER)[-1].time == t0 + 3600


def test_renewal_extends_the_lease_and_keeps_the_address() -> None:
    net = Net([DhcpServer(server_config(lease_time=120))])
    client = net.add_client(1)
    client.start(0.0)
    net.run_until(5.0)
    first = client.lease
    assert first is not None
    net.run_until(first.acquired + 60 + 0.001)
    assert [round(s.time - first.acquired, 3) for s in net.sent(dhcp.REQUEST) if s.message.ciaddr] == [60]
    renewed = client.lease
    assert renewed is not None and renewed.address == first.address and renewed.acquired == first.acquired + 60
    assert isinstance(net.events[-1][2], Bind) and net.events[-1][2].previous is first
    assert client.counters["dhcp.client_renewals"] == 1
    net.run_until(1000.0)  # many renewals later: still the same address, no unbind
    assert not any(isinstance(a, Unbind) for _, _, a in net.events)
    assert client.lease is not None and client.lease.address == first.address


def test_nak_while_renewing_restarts_from_init_and_ends_in_a_new_lease() -> None:
    server = DhcpServer(server_config(lease_time=120))
    net = Net([server])
    client = net.add_client(1)
    client.start(0.0)
    net.run_until(5.0)
    assert bound(net) == "10.9.0.100"
    # the server's pool changes under the client: its address is no longer in the range
    replacement = DhcpServer(server_config(pool_start=addr("10.9.0.150"), pool_end=addr("10.9.0.159"),
                                           lease_time=120))
    net.servers[0] = replacement
    net.run_until(70.0)
    assert [m.message_type for _, _, m in net.replies][2:] == [dhcp.NAK, dhcp.OFFER, dhcp.ACK]
    kinds = [type(a).__name__ + ":" + getattr(a, "reason", "") for _, _, a in net.events]
    assert kinds == ["Bind:", "Unbind:nak", "Bind:"]
    assert bound(net) == "10.9.0.150"
    assert client.counters["dhcp.client_naks"] == 1


def test_decline_after_a_conflicting_arp_reply_then_another_address() -> None:
    server = DhcpServer(server_config(probe=False))
    net = Net([server])
    squatter = bytes.fromhex("0200000000ee")
    # 10.9.0.100 is taken by a host the server cannot see (its probe is off), the client's probe finds it
    net.arp_holder = lambda address: squatter if address == addr("10.9.0.100") else None
    client = net.add_client(1)
    client.start(0.0)
    net.run_until(30.0)
    declines = net.sent(dhcp.DECLINE)
    assert len(declines) == 1
    decline = declines[0].message
    assert decline.ip(dhcp.OPT_REQUESTED_IP) == addr("10.9.0.100") and decline.ip(dhcp.OPT_SERVER_ID) == SERVER_IP
    assert decline.ciaddr == 0 and dhcp.OPT_PARAMS not in decline.options
    # RFC 2131 3.1.5: at least 10 s before the next DISCOVER
    discovers = net.sent(dhcp.DISCOVER)
    assert discovers[1].time - declines[0].time == pytest.approx(10.0)
    assert bound(net) == "10.9.0.101"
    assert client.counters["dhcp.client_conflicts"] == 1 and server.counters["dhcp.server_declines"] == 1
    assert addr("10.9.0.100") in server.conflicts


def test_server_skips_an_address_that_answers_its_probe() -> None:
    server = DhcpServer(server_config())
    net = Net([server])
    net.arp_holder = lambda address: bytes.fromhex("0200000000ee") if address == addr("10.9.0.100") else None
    client = net.add_client(1, probe=False)
    client.start(0.0)
    net.run_until(10.0)
    assert bound(net) == "10.9.0.101"
    assert server.counters["dhcp.server_probe_conflicts"] == 1
    assert [a for _, who, a in net.probes if who == "server"] == [addr("10.9.0.100"), addr("10.9.0.101")]


def test_discover_backoff_rfc2131_4_1() -> None:
    net = Net([])
    client = net.add_client(1, seed=7)
    client.start(0.0)
    net.run_until(400.0)
    times = [s.time for s in net.sent(dhcp.DISCOVER)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for k, gap in enumerate(gaps):
        nominal = min(4 * 2 ** k, 64)
        assert nominal - 1 <= gap <= nominal + 1, (k, gap)
    assert len({round(g, 6) for g in gaps}) == len(gaps)  # randomised (jitter), not a fixed schedule
    assert len(times) >= 8
    # secs counts from the first DISCOVER
    assert [s.message.secs for s in net.sent(dhcp.DISCOVER)][:3] == [0, int(times[1]), int(times[2])]


def test_request_retransmitted_then_back_to_init() -> None:
    net = Net([DhcpServer(server_config())])
    net.drop_to_server = lambda sent: sent.kind == dhcp.REQUEST
    client = net.add_client(1, seed=3)
    client.start(0.0)
    net.run_until(80.0)
    requests = net.sent(dhcp.REQUEST)
    assert len(requests) >= 4
    first_four = [r.time for r in requests[:4]]
    gaps = [b - a for a, b in zip(first_four, first_four[1:], strict=False)]
    assert all(4 * 2 ** k - 1 <= g <= 4 * 2 ** k + 1 for k, g in enumerate(gaps))
    # after request_tries REQUESTs the client starts over with a new DISCOVER
    assert any(d.time > requests[3].time for d in net.sent(dhcp.DISCOVER))


def test_selecting_collects_offers_and_picks_deterministically() -> None:
    other_ip = addr("10.9.0.2")
    a = DhcpServer(server_config(lease_time=600, probe=False))
    b = DhcpServer(server_config(server_ip=other_ip, pool_start=addr("10.9.0.200"), pool_end=addr("10.9.0.210"),
                                 lease_time=3600, probe=False))
    net = Net([a, b])
    client = net.add_client(1, probe=False)
    client.start(0.0)
    net.run_until(10.0)
    assert client.counters["dhcp.client_offers"] == 2
    assert bound(net) == "10.9.0.200"  # the longer lease
    # the other server heard the REQUEST naming b and freed its offer at once
    assert a.leases() == [] and a.counters["dhcp.server_ignored"] == 1


def test_init_reboot_with_a_remembered_address() -> None:
    net = Net([DhcpServer(server_config())])
    client = net.add_client(1, requested=addr("10.9.0.110"), probe=False)
    client.start(0.0)
    net.run_until(5.0)
    assert [s.kind for s in net.log] == [dhcp.REQUEST]
    request = net.log[0].message
    assert request.ip(dhcp.OPT_REQUESTED_IP) == addr("10.9.0.110") and request.ip(dhcp.OPT_SERVER_ID) is None
    assert request.ciaddr == 0
    assert bound(net) == "10.9.0.110"


def test_init_reboot_for_a_foreign_network_is_naked() -> None:
    net = Net([DhcpServer(server_config())])
    client = net.add_client(1, requested=addr("192.168.5.5"), probe=False)
    client.start(0.0)
    net.run_until(10.0)
    assert [m.message_type for _, _, m in net.replies][:1] == [dhcp.NAK]
    nak = net.replies[0]
    assert nak[1].dst == 0xFFFFFFFF and nak[2].yiaddr == 0  # RFC 2131 4.1: NAKs are broadcast
    assert bound(net) == "10.9.0.100"


def test_release_on_stop_and_the_same_address_afterwards() -> None:
    server = DhcpServer(server_config())
    net = Net([server])
    client = net.add_client(1, probe=False)
    client.start(0.0)
    net.run_until(5.0)
    address = bound(net)
    client.stop(net.now)
    net.step()
    release = net.sent(dhcp.RELEASE)
    assert len(release) == 1 and release[0].dst == SERVER_IP and ntoa(release[0].message.ciaddr) == address
    assert server.leases() == [] and isinstance(net.events[-1][2], Unbind)
    # another client now may take it only after never-used addresses; the old one gets it back
    again = net.add_client(1, seed=99, probe=False)
    again.start(net.now)
    net.run_until(net.now + 5)
    assert ntoa(again.lease.address) == address  # type: ignore[union-attr]


def test_two_clients_never_share_an_address_and_exhaustion_is_silent() -> None:
    server = DhcpServer(server_config(probe=False, new_client_share=2.0))
    net = Net([server])
    for n in range(25):  # the pool holds 20
        net.add_client(n + 1, probe=False).start(0.0)
    net.run_until(30.0)
    leases = [c.lease.address for c in net.clients if c.lease is not None]
    assert len(leases) == 20 and len(set(leases)) == 20
    assert server.counters["dhcp.server_exhausted"] > 0
    assert all(c.state == dc.SELECTING for c in net.clients if c.lease is None)


def test_starvation_flood_is_held_to_its_share_of_the_pool() -> None:
    config = server_config(pool_start=addr("10.9.0.10"), pool_end=addr("10.9.0.109"), probe=False)  # 100
    server = DhcpServer(config)
    rng = random.Random(5)
    offered = 0
    for i in range(1000):  # 1000 DISCOVERs from ever new MACs within one minute
        flood = DhcpClient(bytes([2]) + rng.randbytes(5), random.Random(i), ClientConfig(probe=False))
        flood.start(i * 0.05)
        flood.poll(i * 0.05)
        for action in flood.take():
            server.receive(action.payload, i * 0.05)  # type: ignore[union-attr]
        offered += sum(1 for a in server.take() if dhcp.parse(a.payload).message_type == dhcp.OFFER)  # type: ignore[union-attr]
    assert offered == 25  # new_client_share 0.25 of 100 a minute
    assert server.counters["dhcp.server_rate_limited"] == 975
    # a known client is never refused; and the flood's offers lapse after offer_hold
    assert len(server.leases()) <= 25
    assert server.leases() == [] or all(row["state"] == "offered" for row in server.leases())


def test_reply_destinations_rfc2131_4_1() -> None:
    server = DhcpServer(server_config(probe=False))

    def discover(**fields: int) -> dhcp.DhcpMessage:
        message = dhcp.DhcpMessage(op=1, xid=9, chaddr=mac(5), options={dhcp.OPT_MESSAGE_TYPE: b"\x01"}, **fields)
        server.receive(dhcp.build(message), 0.0)
        (reply,) = server.take()
        return reply  # type: ignore[return-value]

    plain = discover()
    assert plain.dst == addr("10.9.0.100") and plain.mac == mac(5) and plain.port == 68  # unicast, no ARP
    broadcast = discover(flags=dhcp.FLAG_BROADCAST)
    assert broadcast.dst == 0xFFFFFFFF and broadcast.mac is None
    relayed = discover(giaddr=addr("10.9.0.254"))
    assert relayed.dst == addr("10.9.0.254") and relayed.port == 67 and dhcp.parse(relayed.payload).giaddr
    inform = dhcp.DhcpMessage(op=1, xid=10, chaddr=mac(6), ciaddr=addr("10.9.0.50"),
                              options={dhcp.OPT_MESSAGE_TYPE: bytes((dhcp.INFORM,))})
    server.receive(dhcp.build(inform), 0.0)
    (ack,) = server.take()
    parsed = dhcp.parse(ack.payload)  # type: ignore[union-attr]
    assert ack.dst == addr("10.9.0.50") and parsed.message_type == dhcp.ACK  # type: ignore[union-attr]
    assert dhcp.OPT_LEASE_TIME not in parsed.options and parsed.yiaddr == 0


def test_request_for_someone_elses_address_is_naked() -> None:
    server = DhcpServer(server_config(probe=False))
    net = Net([server])
    net.add_client(1, probe=False).start(0.0)
    net.run_until(5.0)
    taken = net.clients[0].lease.address  # type: ignore[union-attr]
    thief = net.add_client(2, requested=taken, probe=False)
    thief.start(net.now)
    net.run_until(net.now + 10)
    assert [m.message_type for _, _, m in net.replies if m.chaddr == mac(2)][0] == dhcp.NAK
    assert bound(net, 1) != ntoa(taken)


def test_malformed_messages_are_counted_and_dropped() -> None:
    server = DhcpServer(server_config())
    server.receive(b"\x01" * 100, 0.0)
    server.receive(bytes(240), 0.0)
    assert server.counters["dhcp.truncated"] == 1 and server.counters["dhcp.bad_op"] == 1
    assert server.take() == []
    client = DhcpClient(mac(1), random.Random(1))
    client.start(0.0)
    client.receive(b"junk", 0.0)
    assert client.counters["dhcp.truncated"] == 1


# ----------------------------------------------------------------- persistence

def test_server_restart_with_its_lease_file_gives_each_client_its_old_address(tmp_path: object) -> None:
    path = f"{tmp_path}/leases.json"
    server = DhcpServer(server_config(probe=False))
    net = Net([server])
    for n in (1, 2, 3):
        net.add_client(n, probe=False, hostname=f"h{n}").start(0.0)
    net.run_until(5.0)
    before = {n: bound(net, n - 1) for n in (1, 2, 3)}
    write_lease_file(path, server.export(net.now, wall=1_000_000.0))
    assert json.loads(open(path).read())["leases"][0]["hostname"] == "h1"
    # the server restarts (an hour of wall clock later it would have expired; 30 s later it has not)
    restarted = DhcpServer(server_config(probe=False))
    assert restarted.load(read_lease_file(path), now=500.0, wall=1_000_030.0) == 3
    assert restarted.hostnames() == {f"h{n}": before[n] for n in (1, 2, 3)}
    # the clients lost their state too (a reboot) and DISCOVER in another order: same addresses
    net2 = Net([restarted], now=500.0)
    for n in (3, 1, 2):
        net2.add_client(n, seed=n + 10, probe=False).start(500.0)
    net2.run_until(510.0)
    assert {c.mac[-1]: ntoa(c.lease.address) for c in net2.clients} == before  # type: ignore[union-attr]
    # and a new client never gets one of them, even after they expired
    net2.add_client(9, probe=False).start(net2.now)
    net2.run_until(net2.now + 5)
    assert ntoa(net2.clients[-1].lease.address) not in before.values()  # type: ignore[union-attr]


def test_corrupt_or_foreign_lease_file_is_reported_and_kept(tmp_path: object) -> None:
    path = f"{tmp_path}/leases.json"
    with open(path, "w") as f:
        f.write('{"format": "usernet-dhcp-leases", "version": 1, "leases": [')
    with pytest.raises(LeaseFileError, match="corrupt"):
        read_lease_file(path)
    assert open(path).read().endswith("[")  # untouched
    server = DhcpServer(server_config())
    with pytest.raises(ValueError, match="not a usernet lease file"):
        server.load({"something": "else"}, 0.0, 0.0)
    with pytest.raises(ValueError, match="appears twice"):
        row = {"address": "10.9.0.100", "mac": "02:00:00:00:00:01", "client_id": None, "hostname": None,
               "state": "bound", "expires": 10.0}
        server.load({"format": "usernet-dhcp-leases", "version": 1, "leases": [row, dict(row)]}, 0.0, 0.0)
    assert read_lease_file(f"{tmp_path}/missing.json") is None


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: object) -> None:
    path = f"{tmp_path}/leases.json"
    for i in range(3):
        write_lease_file(path, {"n": i})
    import os

    assert sorted(os.listdir(str(tmp_path))) == ["leases.json"]
    assert read_lease_file(path) == {"n": 2}
