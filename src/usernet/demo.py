"""`usernet demo`: hosts on the in-memory network hold a real conversation. No root, no devices.

The trace is taken on the switch, so every frame appears once, labelled by the host that sent it
(``alice >`` or ``bob >``), in the order it crossed the wire; TCP sequence numbers are relative.
The first TCP SYN is also printed with its full field dump (what ``--trace -vv`` prints for every
frame). The last step fetches a page by name over HTTPS (untraced: TLS would bury the rest).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from usernet.api.host import Host
from usernet.apps.dhcp import serve_dhcp
from usernet.apps.dns import serve_dns
from usernet.apps.services import serve_simple
from usernet.links.trace import TraceFormatter
from usernet.wire import ipv4

TCP_PAYLOAD = 3000  # three segments at the 1460-byte MSS: short enough to read every line


def _write(out: TextIO, text: str) -> None:
    out.write(text + "\n")  # one write per line: the switch's trace lines come from other threads
    out.flush()


def _say(out: TextIO, text: str, first: bool = False) -> None:
    _write(out, ("" if first else "\n") + f"== {text}")


def _is_first_syn(frame: bytes, seen: list[bool]) -> bool:
    """An Ethernet/IPv4/TCP frame with SYN and without ACK, the first one of the run."""
    if seen or len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return False
    tcp_at = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < tcp_at + 14 or frame[tcp_at + 13] & 0x12 != 0x02:
        return False
    seen.append(True)
    return True


def _trace_switch(switch: Any, out: TextIO, verbose: int, absolute: bool, hexdump: bool) -> None:
    formatter = TraceFormatter(verbose=verbose, absolute=absolute, hexdump=hexdump)
    dumped: list[bool] = []

    def on_frame(port: Any, frame: bytes) -> None:  # called by the switch, with its lock held
        if verbose < 2 and _is_first_syn(frame, dumped):
            formatter.verbose = 2
            formatter.emit(out, port.name, ">", frame)
            formatter.verbose = verbose
            return
        formatter.emit(out, port.name, ">", frame)

    switch.on_frame = on_frame


def _make_certificate(directory: str, name: str) -> tuple[str, str] | None:
    """A self-signed certificate for *name* (and its key), made by the openssl command line: the core
    has no crypto of its own. None when openssl is missing or fails."""
    import os
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        return None
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={name}",
                        "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key


def _https_by_name(alice: Host, bob: Host, out: TextIO) -> int:
    """alice fetches a page by name over HTTPS from a WSGI app on bob; the number of failures."""
    import tempfile

    from usernet.apps.http import serve, server_context
    from usernet.apps.http_client import get

    name = "bob.demo.test"
    _say(out, f"HTTPS by name: bob serves a WSGI app on port 443 with a certificate for {name}; alice fetches "
              f"https://{name}/ (bob's DNS gives the address, her TLS checks the certificate and the name)")
    with tempfile.TemporaryDirectory(prefix="usernet-demo-") as directory:
        made = _make_certificate(directory, name)
        if made is None:
            _write(out, "   skipped: making a certificate needs the openssl command line")
            return 0

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            text = f"hello {environ['REMOTE_ADDR']}, from a WSGI app on bob ({environ['wsgi.url_scheme']})"
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [text.encode()]

        with serve(bob, app, 443, tls=server_context(*made)):
            try:
                response = get(alice, f"https://{name}/", cafile=made[0], timeout=5)
            except OSError as err:
                _write(out, f"   failed: {err!r}")
                return 1
    _write(out, f"   alice got {response.status} {response.reason}: {response.body.decode()!r}")
    return int(response.status != 200 or not response.body.startswith(b"hello "))


def run_demo(trace: bool = True, out: TextIO = sys.stdout, *, verbose: int = 0, absolute: bool = False,
             hexdump: bool = False) -> int:
    """Run the demo, writing to *out*; 0 when every step worked. *verbose*, *absolute* and *hexdump*
    are the tracer's options (see :mod:`usernet.links.trace`)."""
    from usernet.links.memory import Switch

    switch = Switch()
    failures = 0
    _say(out, "alice and bob plug into an in-memory switch; bob (10.0.0.2) announces his address "
              "(gratuitous ARP), alice has none yet", first=True)
    if trace:
        _trace_switch(switch, out, verbose, absolute, hexdump)
    bob = Host(switch.port(name="bob"), addr="10.0.0.2/24", seed=2, name="bob", dns=["127.0.0.1"])
    alice = Host(switch.port(name="alice"), dhcp={"hostname": "alice"}, seed=1, name="alice")
    bob.start()
    dhcp = serve_dhcp(bob, "dhcp-server:10.0.0.1-10.0.0.1,router=10.0.0.2,dns=10.0.0.2,domain=demo.test,lease=3600")
    # bob answers DNS for himself and for the names his DHCP server leased (as dnsmasq does)
    serve_dns(bob, 53, records={"bob.demo.test": "10.0.0.2"}, domain="demo.test", dynamic=dhcp.hostnames)
    _say(out, "alice has no address: bob's DHCP server probes 10.0.0.1 (ARP, sender 0.0.0.0) and offers it; "
              "alice requests it, probes it herself (RFC 5227), then announces it")
    alice.start()  # blocks until bob's server leased her an address
    lease = alice.dhcp_lease
    _write(out, f"   alice leased {lease.cidr} from {ipv4.ntoa(lease.server_id)}, router "
                f"{ipv4.ntoa(lease.router)}, DNS {', '.join(alice.dns_servers)}, lease {lease.lease_time} s")
    with alice, bob:
        serve_simple(bob, "echo", 7)
        _say(out, "alice looks up \"bob\": the search domain and DNS server came with her lease")
        address = alice.getaddrinfo("bob", 7, type=1)[0][4][0]
        _write(out, f"   bob -> {address} (bob's DNS answers for bob.demo.test)")
        failures += address != "10.0.0.2"
        mine = bob.getaddrinfo("alice.demo.test", 7, type=1)[0][4][0]
        _write(out, f"   and bob, asking his own responder over his loopback: alice.demo.test -> {mine} "
                    "(the name alice gave his DHCP server)")
        failures += mine != lease.cidr.partition("/")[0]
        _say(out, "alice pings bob: ARP resolves bob first, no request is lost")
        rtts = alice.ping("10.0.0.2", count=3, interval=0.05, size=56)
        for seq, rtt in enumerate(rtts, 1):
            _write(out, f"   reply {seq}: " + (f"{rtt * 1000:.3f} ms" if rtt is not None else "lost"))
        failures += sum(r is None for r in rtts)

        _say(out, "a 4,000-byte ping: fragmented by alice, reassembled by bob, and back")
        rtts = alice.ping("10.0.0.2", count=1, size=4000)
        _write(out, "   reply: " + (f"{rtts[0] * 1000:.3f} ms" if rtts[0] is not None else "lost"))
        failures += rtts[0] is None

        _say(out, "UDP echo (RFC 862) on bob's port 7")
        with alice.socket(type=2) as udp:
            udp.settimeout(2)
            udp.sendto(b"hello, bob", ("10.0.0.2", 7))
            data, peer = udp.recvfrom(2048)
            _write(out, f"   alice got {data!r} from {peer}")
            failures += data != b"hello, bob"

        _say(out, "UDP to a closed port: bob answers ICMP port unreachable, alice's socket sees ECONNREFUSED")
        with alice.socket(type=2) as udp:
            udp.settimeout(2)
            udp.connect(("10.0.0.2", 9999))
            udp.send(b"anyone there?")
            try:
                udp.recv(100)
                _write(out, "   unexpected answer")
                failures += 1
            except ConnectionRefusedError as err:
                _write(out, f"   alice: {err!r}")

        if alice.stack.tcp is not None:
            _say(out, f"TCP echo on bob's port 7: handshake, {TCP_PAYLOAD:,} bytes each way, a FIN each way "
                      "(seq and ack relative to each side's ISN)")
            conn: Any
            with alice.socket() as conn:
                conn.settimeout(5)
                conn.connect(("bob", 7))  # by name
                payload = bytes(range(256)) * (TCP_PAYLOAD // 256) + bytes(TCP_PAYLOAD % 256)
                conn.sendall(payload)
                conn.shutdown(1)
                received = bytearray()
                while chunk := conn.recv(65536):
                    received += chunk
                _write(out, f"   alice sent {len(payload)} bytes, got back {len(received)}, "
                            f"intact: {received == payload}")
                failures += received != payload

            switch.on_frame = None  # some 30 frames of TLS would bury the rest: this step is untraced
            failures += _https_by_name(alice, bob, out)
    switch.on_frame = None
    _say(out, "counters: alice")
    _write(out, alice.format_counters())
    _say(out, "counters: bob")
    _write(out, bob.format_counters())
    _write(out, f"\ndemo {'passed' if not failures else f'had {failures} failures'}")
    return 0 if not failures else 1
