"""DHCP through the whole host: the agents on sans-IO stacks in virtual time (addresses, routes,
sockets), and Host(dhcp=True) against a usernet server on the in-memory switch."""

from __future__ import annotations

import errno
import random
import time

import pytest

from tests.stack.netsim import Segment
from usernet.api.dhcp import DhcpClientAgent
from usernet.api.host import Host
from usernet.apps.dhcp import DhcpServerAgent, parse_server_spec, serve_dhcp, server_config
from usernet.cli import main
from usernet.links.memory import Switch
from usernet.proto.dhcp_client import ClientConfig
from usernet.stack.core import Stack
from usernet.wire import ipv4
from usernet.wire.ipv4 import addr

SERVER_MAC = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000002")


def _pair(lease: int = 120, lease_file: str | None = None) -> tuple[Stack, DhcpServerAgent, Stack, Segment]:
    server_stack = Stack(mac=SERVER_MAC, addr="10.8.0.1/24", rng=random.Random(1))
    spec = parse_server_spec(f"dhcp-server:10.8.0.50-10.8.0.60,router=10.8.0.1,dns=10.8.0.1,dns=10.8.0.2,"
                             f"domain=example.test,lease={lease}")
    config, iface = server_config(server_stack, spec)
    agent = DhcpServerAgent(server_stack, config, iface, lease_file=lease_file, wall_clock=lambda: 1e6)
    client_stack = Stack(mac=CLIENT_MAC, rng=random.Random(2))
    net = Segment(server_stack, client_stack)
    net.exchange()
    return server_stack, agent, client_stack, net


def test_lease_applied_to_the_stack_in_virtual_time() -> None:
    server_stack, server, client_stack, net = _pair()
    client = DhcpClientAgent(client_stack)
    changes: list[str] = []
    client.on_change.append(lambda lease, what: changes.append(what))
    client.start(net.now)
    net.run(5.0)
    assert client.lease is not None and changes == ["bound"]
    assert [str(a) for a in client_stack.primary.addresses] == ["10.8.0.50/24"]
    assert client_stack.gateway == addr("10.8.0.1")
    assert [ipv4.ntoa(a) for a in client.lease.dns] == ["10.8.0.1", "10.8.0.2"]
    # the OFFER and ACK went unicast to the new address and the client's MAC without ARP (RFC 2131 4.1)
    offers = [f for _, s, f in net.captured if s is server_stack and f[12:14] == b"\x08\x00" and f[23] == 17]
    assert offers and all(f[:6] == CLIENT_MAC and f[30:34] == addr("10.8.0.50").to_bytes(4, "big") for f in offers)
    # DISCOVER and REQUEST left from 0.0.0.0 to 255.255.255.255
    requests = [f for _, s, f in net.captured if s is client_stack and f[12:14] == b"\x08\x00"]
    assert requests[0][26:34] == bytes(4) + b"\xff" * 4
    assert client_stack.counters["arp.tx_probe"] == 3 and server_stack.counters["arp.tx_probe"] == 1
    assert server.hostnames() == {}


def test_renewal_keeps_sockets_and_expiry_fails_them() -> None:
    server_stack, server, client_stack, net = _pair(lease=120)
    client = DhcpClientAgent(client_stack)
    client.start(net.now)
    net.run(5.0)
    lease = client.lease
    assert lease is not None
    endpoint = client_stack.udp_open(lease.address, 5000)
    net.run(200.0)  # two renewals
    assert client_stack.counters["dhcp.client_renewals"] >= 2 and endpoint.error is None
    assert server_stack.counters["dhcp.server_acks"] >= 3
    # the server goes away: the lease runs out, the address goes, the bound socket learns of it
    net.stacks.remove(server_stack)
    net.run(130.0)
    assert client.lease is None and client_stack.primary.addresses == []
    assert endpoint.error is not None and endpoint.error.errno == errno.EADDRNOTAVAIL
    assert client_stack.gateway == 0
    assert client.state in ("SELECTING", "INIT")


def test_server_lease_file_written_atomically_and_reloaded(tmp_path: object) -> None:
    path = f"{tmp_path}/leases.json"
    server_stack, server, client_stack, net = _pair(lease_file=path)
    client = DhcpClientAgent(client_stack, config=ClientConfig(hostname="bob"))
    client.start(net.now)
    net.run(5.0)
    assert client.lease is not None
    import json

    data = json.loads(open(path).read())
    assert [(r["address"], r["mac"], r["hostname"]) for r in data["leases"]] == \
        [("10.8.0.50", "02:00:00:00:00:02", "bob")]
    server.stop()
    config, iface = server_config(server_stack, parse_server_spec("dhcp-server:10.8.0.50-10.8.0.60"))
    again = DhcpServerAgent(server_stack, config, iface, lease_file=path, wall_clock=lambda: 1e6)
    assert again.hostnames() == {"bob": "10.8.0.50"}


def test_dhcp_server_spec_errors() -> None:
    for spec, match in [("dhcp-server:10.0.0.9-10.0.0.1", "after"), ("dhcp-server:10.0.0.1", "FIRST-LAST"),
                        ("dhcp-server:10.0.0.1-10.0.0.5,lease=5", "at least 60"),
                        ("dhcp-server:10.0.0.1-10.0.0.5,reserve=01:00:00:00:00:01=10.0.0.3", "unicast"),
                        ("dhcp-server:10.0.0.1-10.0.0.5,colour=red", "unknown key")]:
        with pytest.raises(ValueError, match=match):
            parse_server_spec(spec)
    spec = parse_server_spec("dhcp-server:10.0.0.10-10.0.0.20,reserve=02:00:00:00:00:09=10.0.0.5,dns=1.1.1.1,"
                             "dns=8.8.8.8,lease-file=/tmp/x")
    assert spec["reserve"] == {bytes.fromhex("020000000009"): addr("10.0.0.5")} and len(spec["dns"]) == 2
    with pytest.raises(ValueError, match="no address of this host"):
        server_config(Stack(mac=SERVER_MAC, addr="10.1.0.1/24"), spec)


# ----------------------------------------------------------------- Host on the in-memory switch

def test_host_with_dhcp_true_against_a_usernet_server() -> None:
    switch = Switch()
    server = Host(switch.port(name="srv"), addr="10.7.0.1/24", seed=1, name="srv")
    with server:
        serve_dhcp(server, "dhcp-server:10.7.0.100-10.7.0.110,router=10.7.0.1,dns=10.7.0.1,domain=lan,lease=600")
        listener = server.create_server(("10.7.0.1", 8080))
        started = time.monotonic()
        with Host(switch.port(name="a"), dhcp={"hostname": "alice"}, seed=2, name="a") as a, \
                Host(switch.port(name="b"), dhcp={"hostname": "bob"}, seed=3, name="b") as b:
            assert time.monotonic() - started < 10
            assert {a.address, b.address} == {"10.7.0.100", "10.7.0.101"}  # two MACs, two addresses
            assert a.dns_servers == ["10.7.0.1"] and a.search_domains == ["lan"]
            assert a.dhcp_lease.router == addr("10.7.0.1")
            assert server.dhcp_server.hostnames() == {"alice": a.address, "bob": b.address}
            with a.create_connection(("10.7.0.1", 8080), timeout=5) as conn:
                peer, _ = listener.accept()
                conn.sendall(b"hello")
                assert peer.recv(5) == b"hello"
                peer.close()
            assert a.routes()[-1]["via"] == "10.7.0.1"
        listener.close()
        # both released their leases on close (RFC 2131 4.4.6)
        assert server.wait_for(lambda: server.stack.counters["dhcp.server_releases"] == 2, 5)
        assert server.dhcp_server.leases() == []


def test_host_with_dhcp_and_no_server_fails_with_a_clear_timeout() -> None:
    switch = Switch()
    host = Host(switch.port(name="lonely"), dhcp={"timeout": 1.0}, seed=4, name="lonely")
    with pytest.raises(TimeoutError) as info:
        with host:
            pass
    assert info.value.errno == errno.ETIMEDOUT and "no DHCP server answered" in str(info.value)
    assert host.closed


def test_host_dhcp_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        Host(Switch().port(), dhcp={"colour": "red"})


def test_cli_dhcp_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dhcp", "--tun", "tun9"]) == 2
    assert "DHCP needs Ethernet" in capsys.readouterr().err
    assert main(["up", "--tap", "tap9", "--dhcp", "--gateway", "10.0.0.1"]) == 2
    assert "not with --dhcp" in capsys.readouterr().err
    assert main(["up", "--tap", "tap9", "--addr", "10.0.0.1/24", "--serve", "dhcp-server:10.0.0.9-10.0.0.1"]) == 2
    assert "FIRST is after LAST" in capsys.readouterr().err
